"""A pipeline file: an output folder, optional defaults, and an ordered list of stages.

Each stage is a full train config (model, task, method, data, train) plus a ``name`` and
``merge``. ``defaults`` are merged under every stage. A stage without ``model`` starts from the
previous stage's run folder. Everything is validated before the first stage runs.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config.loading import apply_override, deep_merge, read_yaml_mapping
from tunelab.config.schema import TunelabConfig
from tunelab.errors import UserError
from tunelab.methods.config_loading import validate_config
from tunelab.methods.registry import available_methods

STAGE_ONLY_KEYS = {"name", "merge"}
PLACEHOLDER_MODEL = "previous-stage"


@dataclass
class Stage:
    name: str
    index: int
    tree: dict[str, Any]  # the stage's train config, without name/merge, model filled in at run time
    follows_previous: bool  # True when the stage starts from the previous stage's result
    run_dir: Path


@dataclass
class PipelineSpec:
    output_dir: Path
    stages: list[Stage]


def stage_config(stage: Stage, model: str | None = None) -> TunelabConfig:
    """The validated train config of a stage (its model given when it follows the previous one)."""
    tree = copy.deepcopy(stage.tree)
    if stage.follows_previous:
        tree["model"] = model or PLACEHOLDER_MODEL
    tree["output_dir"] = str(stage.run_dir)
    try:
        return validate_config(tree)
    except UserError as error:
        raise UserError(f"stage '{stage.name}': {error}") from None


def load_pipeline(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> PipelineSpec:
    tree = read_yaml_mapping(Path(path))
    for assignment in overrides:
        apply_override(tree, assignment, available_methods())
    unknown = set(tree) - {"output_dir", "defaults", "stages"}
    if unknown:
        raise UserError(f"{path}: unknown key '{sorted(unknown)[0]}' (a pipeline has output_dir, defaults, stages)")
    stages_tree = tree.get("stages")
    if not isinstance(stages_tree, list) or not stages_tree:
        raise UserError(f"{path}: 'stages' must be a non-empty list of train configs")
    defaults = tree.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UserError(f"{path}: 'defaults' must be a mapping")
    output_dir = Path(tree.get("output_dir") or "runs/pipeline").expanduser().absolute()
    stages: list[Stage] = []
    for index, raw in enumerate(stages_tree):
        if not isinstance(raw, dict):
            raise UserError(f"{path}: stage {index + 1} must be a mapping")
        name = str(raw.get("name") or f"stage{index + 1}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in {s.name for s in stages}:
            raise UserError(f"{path}: stage name '{name}' must be unique and use letters, digits, . _ -")
        if raw.get("merge", True) is not True:
            raise UserError(
                f"{path}: stage '{name}': merge: false (stacking unmerged adapters) is not supported; "
                "each stage starts from the previous result with its adapter merged"
            )
        if "output_dir" in raw:
            raise UserError(f"{path}: stage '{name}': a stage's folder is set by the pipeline (remove output_dir)")
        body = deep_merge(defaults, {k: v for k, v in raw.items() if k not in STAGE_ONLY_KEYS})
        follows = "model" not in raw or raw["model"] is None
        if follows and index == 0:
            if "model" not in body:
                raise UserError(f"{path}: the first stage needs a model")
            follows = False
        if follows:
            body.pop("model", None)
        stage = Stage(name, index, body, follows, output_dir / f"{index + 1:02d}-{name}")
        stage_config(stage)  # validate now, before anything runs
        stages.append(stage)
    return PipelineSpec(output_dir, stages)
