"""Read a config: YAML file, then dotted ``key=value`` overrides, then validation against the schema.

Every problem becomes one ``UserError`` line naming the key (``config error: train.lr: ...``),
raised before anything heavy (torch, a model, a dataset) is loaded. The method subtree is checked
against a ``MethodCatalog`` the caller hands in: ``tunelab.methods.config_loading.load_config``
hands the registry's, and is what everything else calls.
"""

from __future__ import annotations

import copy
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunelab.config.precision import with_resolved_precision
from tunelab.config.schema import (
    METHODS_CONTEXT,
    DataConfig,
    EvalConfig,
    MethodCatalog,
    MethodOptionError,
    MethodOptions,
    PromptConfig,
    ScratchModelConfig,
    TrainConfig,
    TunelabConfig,
)
from tunelab.errors import UserError
from tunelab.run_files import read_run_config


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


def is_text_key(tree: dict[str, Any], parts: list[str], methods: MethodCatalog) -> bool:
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
        method = tree.get("method")
        name = method.get("name") if isinstance(method, dict) else method
        chosen = methods.get(str(name or MethodOptions.model_fields["name"].default))
        field = chosen.options_type.model_fields.get(parts[1]) if chosen else None
        return field is not None and _expects_text(field.annotation)
    section = sections.get(parts[0])
    field = section.model_fields.get(parts[1]) if section and len(parts) == 2 else None
    return field is not None and _expects_text(field.annotation)


def apply_override(tree: dict[str, Any], assignment: str, methods: MethodCatalog) -> None:
    """Apply one ``a.b.c=value`` override in place.

    The value is parsed as YAML (``16``, ``true``, ``[a, b]``, ``null``) except for string and
    path keys, which keep the text as typed (``output_dir=2024`` is a folder, not a number; a method
    option's type comes from ``methods``).
    """
    if "=" not in assignment:
        raise UserError(f"override '{assignment}' must look like key=value (e.g. train.max_steps=50)")
    key, raw_value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"override '{assignment}': empty key")
    if is_text_key(tree, parts, methods) and raw_value.strip() not in ("null", "~"):
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


def config_tree(
    path: Path | str | None, overrides: list[str] | tuple[str, ...], methods: MethodCatalog
) -> dict[str, Any]:
    """The config as plain data: an optional YAML file with ``key=value`` overrides applied."""
    tree: dict[str, Any] = read_yaml_mapping(Path(path)) if path is not None else {}
    for assignment in overrides:
        apply_override(tree, assignment, methods)
    return tree


def validate_tree(tree: dict[str, Any], methods: MethodCatalog) -> TunelabConfig:
    """The validated config of a tree, its method options checked against ``methods``."""
    try:
        return TunelabConfig.model_validate(tree, context={METHODS_CONTEXT: methods})
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


def as_recorded(config: TunelabConfig, fresh: bool = False) -> TunelabConfig:
    """The config as a run folder's config.yaml records it: local paths absolute, and
    ``train.precision: auto`` replaced by the precision of the run ``output_dir`` already holds,
    else (or ``fresh``: the folder is to be replaced) by what it means on this machine."""
    config = with_absolute_paths(config)
    return with_resolved_precision(config, None if fresh else recorded_precision(Path(config.output_dir)))


def recorded_precision(folder: Path) -> str | None:
    """``train.precision`` in the config.yaml of the run in ``folder``; None where there is none."""
    try:
        recorded = read_run_config(folder).get("train", {}).get("precision")
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return None
    return recorded if isinstance(recorded, str) else None


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


def describe_config_keys(methods: MethodCatalog) -> str:
    """Every config key with its default, for ``tunelab train --help``."""
    lines = ["config keys (YAML file and/or key=value overrides):"]
    for name in ("model", "task", "output_dir"):
        field = TunelabConfig.model_fields[name]
        lines.append(_key_line(name, field.get_default(call_default_factory=True), field.description))
    lines += _section_lines("data.", DataConfig)
    lines += _section_lines("prompt.", PromptConfig)
    lines += _section_lines("train.", TrainConfig)
    lines += _section_lines("eval.", EvalConfig)
    lines.append(_key_line("method.name", MethodOptions.model_fields["name"].default, "one of the methods below"))
    for method in methods.values():
        lines.append(f"  method.name={method.name}: {method.summary}")
        for option, field in method.options_type.model_fields.items():
            if option != "name":
                lines.append(_key_line(f"method.{option}", field.default, field.description, indent=4))
    return "\n".join(lines)
