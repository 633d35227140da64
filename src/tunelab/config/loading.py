"""Load a config: YAML file, then dotted ``key=value`` overrides, then validation.

Every problem becomes one ``UserError`` line naming the key (``config error: train.lr: ...``),
raised before anything heavy (torch, a model, a dataset) is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tunelab.config.schema import DataConfig, TrainConfig, TunelabConfig
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


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` override in place; the value is parsed as YAML (``16``, ``true``, ``[a, b]``)."""
    if "=" not in assignment:
        raise UserError(f"override '{assignment}' must look like key=value (e.g. train.max_steps=50)")
    key, raw_value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"override '{assignment}': empty key")
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
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        message = f"{message} (got {first['input']!r})"
    return f"config error: {where}: {message}" if where else f"config error: {message}"


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TunelabConfig:
    """The validated config from an optional YAML file and ``key=value`` overrides."""
    tree: dict[str, Any] = read_yaml_mapping(Path(path)) if path is not None else {}
    for assignment in overrides:
        apply_override(tree, assignment)
    try:
        return TunelabConfig.model_validate(tree)
    except ValidationError as error:
        raise UserError(describe_validation_error(error)) from None


def check_training_inputs(config: TunelabConfig) -> None:
    """The checks a training run needs beyond the schema: required keys, files that must exist."""
    if not config.model:
        raise UserError("config error: model: required (a hub id, a local model folder or a run folder)")
    if config.data.train is None:
        raise UserError("config error: data.train: required (a .jsonl, .json, .csv, .parquet or .txt file)")
    for key, path in (("data.train", config.data.train), ("data.eval", config.data.eval)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"config error: {key}: file not found: {path}")
    from tunelab.models.resolve import check_model_reference

    check_model_reference(config.model)


def _section_lines(prefix: str, section: type[BaseModel]) -> list[str]:
    lines = []
    for name, field in section.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "null" if default is None else (default if not isinstance(default, dict) else "{}")
        lines.append(f"  {prefix}{name:<24} default {shown!s:<12} {field.description or ''}")
    return lines


def describe_config_keys() -> str:
    """Every config key with its default, for ``tunelab train --help``."""
    from tunelab.methods.registry import available_methods

    lines = ["config keys (YAML file and/or key=value overrides):"]
    for name in ("model", "task", "output_dir"):
        field = TunelabConfig.model_fields[name]
        default = field.get_default(call_default_factory=True)
        lines.append(f"  {name:<29} default {default!s:<12} {field.description or ''}")
    lines += _section_lines("data.", DataConfig)
    lines += _section_lines("train.", TrainConfig)
    lines.append("  method.name                   default lora         one of the methods below")
    for method in available_methods().values():
        lines.append(f"  method.name={method.name}: {method.summary}")
        for option, field in method.options_type.model_fields.items():
            if option == "name":
                continue
            lines.append(f"    method.{option:<22} default {field.default!s:<12} {field.description or ''}")
    return "\n".join(lines)
