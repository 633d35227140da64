"""Load a config: YAML file, then dotted ``key=value`` overrides, then validation.

Every problem becomes one ``UserError`` line naming the key (``config error: train.lr: ...``),
raised before anything heavy (torch, a model, a dataset) is loaded.
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunelab.config.schema import (
    DataConfig,
    EvalConfig,
    MethodOptions,
    PromptConfig,
    ScratchModelConfig,
    TrainConfig,
    TunelabConfig,
)
from tunelab.errors import UserError


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}{where}: invalid YAML: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: a config must be a mapping of keys to values")
    return loaded


def _expects_text(annotation: Any) -> bool:
    """True for ``str`` / ``Path`` fields (optional or not), whose values must stay as typed."""
    if annotation in (str, Path):
        return True
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    return (
        bool(arguments)
        and typing.get_origin(annotation) in (typing.Union, types.UnionType)
        and all(a in (str, Path) for a in arguments)
    )


def is_text_key(tree: dict[str, Any], parts: list[str]) -> bool:
    """Whether the dotted key names a string or path setting (``output_dir``, ``data.train``, ...)."""
    if parts == ["model"]:
        return True  # a hub id or a folder; a scratch model is given key by key (model.init=scratch)
    if len(parts) == 1:
        field = TunelabConfig.model_fields.get(parts[0])
        return field is not None and _expects_text(field.annotation)
    sections: dict[str, type[BaseModel]] = {
        "data": DataConfig,
        "train": TrainConfig,
        "model": ScratchModelConfig,
        "prompt": PromptConfig,
        "eval": EvalConfig,
    }
    if parts[:2] == ["data", "columns"]:
        return len(parts) == 3  # one column name; the whole mapping is YAML
    if parts[0] == "method" and len(parts) == 2:
        from tunelab.methods.registry import available_methods

        method = tree.get("method")
        name = method.get("name") if isinstance(method, dict) else method
        chosen = available_methods().get(str(name or MethodOptions.model_fields["name"].default))
        field = chosen.options_type.model_fields.get(parts[1]) if chosen else None
        return field is not None and _expects_text(field.annotation)
    section = sections.get(parts[0])
    field = section.model_fields.get(parts[1]) if section and len(parts) == 2 else None
    return field is not None and _expects_text(field.annotation)


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place.

    The value is parsed as YAML (``16``, ``true``, ``[a, b]``, ``null``) except for string and
    path keys, which keep the text as typed (``output_dir=2024`` is a folder, not a number).
    """
    if "=" not in assignment:
        raise UserError(f"override '{assignment}' must look like key=value (e.g. train.max_steps=50)")
    key, raw_value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"override '{assignment}': empty key")
    if is_text_key(tree, parts) and raw_value.strip() not in ("null", "~"):
        value: Any = raw_value
    else:
        try:
            value = yaml.safe_load(raw_value) if raw_value.strip() else ""
        except yaml.YAMLError:
            value = raw_value
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part == "method":
            child = {"name": child}
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def describe_validation_error(error: ValidationError) -> str:
    from tunelab.methods.registry import MethodOptionError

    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "__root__")
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, MethodOptionError):
        return f"config error: {where}.{cause.key}: {cause.detail}"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        message = f"{message} (got {first['input']!r})"
    return f"config error: {where}: {message}" if where else f"config error: {message}"


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: nested mappings merge key by key, anything else is replaced (copies, never shared)."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TunelabConfig:
    """The validated config from an optional YAML file and ``key=value`` overrides."""
    tree: dict[str, Any] = read_yaml_mapping(Path(path)) if path is not None else {}
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        return TunelabConfig.model_validate(tree)
    except ValidationError as error:
        raise UserError(describe_validation_error(error)) from None


def with_absolute_paths(config: TunelabConfig) -> TunelabConfig:
    """The config with local paths made absolute, so a run folder works from any directory.

    Relative paths mean relative to the current directory, as on the command line.
    """
    updates: dict[str, Any] = {"output_dir": Path(config.output_dir).expanduser().absolute()}
    if isinstance(config.model, ScratchModelConfig):
        updates["model"] = config.model.model_copy(update={"tokenizer": config.model.tokenizer.expanduser().absolute()})
    elif config.model and Path(config.model).expanduser().exists():
        updates["model"] = str(Path(config.model).expanduser().absolute())
    data = {
        key: Path(value).expanduser().absolute()
        for key in ("train", "eval")
        if (value := getattr(config.data, key)) is not None
    }
    return config.model_copy(update={**updates, "data": config.data.model_copy(update=data)})


def _needs_training_data(method_name: str, has_eval: bool) -> bool:
    """Every method learns from data.train, except zero-shot and RAG, which only answer data.eval."""
    from tunelab.methods.registry import get_method

    return get_method(method_name).needs_training_data or not has_eval


def check_training_inputs(config: TunelabConfig) -> None:
    """The checks a training run needs beyond the schema: required keys, files that must exist."""
    if not config.model:
        raise UserError("config error: model: required (a hub id, a local model folder or a run folder)")
    if config.data.train is None and _needs_training_data(config.method.name, config.data.eval is not None):
        raise UserError("config error: data.train: required (a .jsonl, .json, .csv, .parquet or .txt file)")
    for key, path in (("data.train", config.data.train), ("data.eval", config.data.eval)):
        if path is not None and Path(path).is_dir():
            raise UserError(f"config error: {key}: {path} is a folder; give a data file")
        if path is not None and not Path(path).is_file():
            raise UserError(f"config error: {key}: file not found: {path}")
    output = Path(config.output_dir).expanduser().absolute()
    model_path = config.model.tokenizer if isinstance(config.model, ScratchModelConfig) else Path(config.model)
    protected = [("model", model_path.expanduser())] + [
        (key, Path(path).expanduser())
        for key, path in (("data.train", config.data.train), ("data.eval", config.data.eval))
        if path is not None
    ]
    for key, path in protected:
        if path.exists() and (output == path.absolute() or output in path.absolute().parents):
            raise UserError(
                f"config error: output_dir {config.output_dir} would hold {key} {path}; choose another output_dir"
            )
    from tunelab.models.resolve import check_model_reference
    from tunelab.runs.reading import run_task

    if isinstance(config.model, ScratchModelConfig):
        if (
            not (config.model.tokenizer / "tokenizer.json").is_file()
            and not (config.model.tokenizer / "tokenizer_config.json").is_file()
        ):
            raise UserError(
                f"config error: model.tokenizer: no tokenizer in {config.model.tokenizer} "
                "(make one with `tunelab tokenizer train`)"
            )
        return
    check_model_reference(config.model)
    if run_task(config.model) == "classification" and config.task != "classification":
        raise UserError(
            f"model: {config.model} is a classification run: it predicts labels and has no language-model head, "
            f"so it cannot be the base of a {config.task} run; start from its base model instead "
            "(or train task=classification on it)"
        )


def _shown(default: Any) -> str:
    """A default as the user would write it in YAML."""
    if isinstance(default, Path):
        return str(default)
    return yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()


def _key_line(key: str, default: Any, description: str | None, indent: int = 2) -> str:
    return f"{' ' * indent}{key:<{32 - indent}} default {_shown(default):<12} {description or ''}"


def _section_lines(prefix: str, section: type[BaseModel]) -> list[str]:
    return [
        _key_line(prefix + name, field.get_default(call_default_factory=True), field.description)
        for name, field in section.model_fields.items()
    ]


def describe_config_keys() -> str:
    """Every config key with its default, for ``tunelab train --help``."""
    from tunelab.methods.registry import available_methods

    lines = ["config keys (YAML file and/or key=value overrides):"]
    for name in ("model", "task", "output_dir"):
        field = TunelabConfig.model_fields[name]
        lines.append(_key_line(name, field.get_default(call_default_factory=True), field.description))
    lines += _section_lines("data.", DataConfig)
    lines += _section_lines("prompt.", PromptConfig)
    lines += _section_lines("train.", TrainConfig)
    lines += _section_lines("eval.", EvalConfig)
    lines.append(_key_line("method.name", MethodOptions.model_fields["name"].default, "one of the methods below"))
    for method in available_methods().values():
        lines.append(f"  method.name={method.name}: {method.summary}")
        for option, field in method.options_type.model_fields.items():
            if option != "name":
                lines.append(_key_line(f"method.{option}", field.default, field.description, indent=4))
    return "\n".join(lines)
