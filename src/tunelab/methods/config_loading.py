"""Load a config with its method options resolved by the method registry, and check a training run's
inputs before anything heavy loads.

``tunelab.config`` knows the schema but not the methods (they sit above it), so the one call that
turns a YAML file and overrides into a ``TunelabConfig`` lives here, where the registry is: the
method subtree is validated against the named method's options and unset train settings take that
method's recommendations. The input checks need the registry too (which methods train on
data.train) and the model references (a run folder, a folder, a hub id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.config.loading import config_tree, validate_tree
from tunelab.config.schema import ScratchModelConfig, TunelabConfig
from tunelab.errors import UserError
from tunelab.methods.in_context import InContextStrategy
from tunelab.methods.registry import available_methods, get_method
from tunelab.models.resolve import check_model_reference
from tunelab.run_files import run_task


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TunelabConfig:
    """The validated config from an optional YAML file and ``key=value`` overrides."""
    methods = available_methods()
    return validate_tree(config_tree(path, overrides, methods), methods)


def validate_config(tree: dict[str, Any]) -> TunelabConfig:
    """The validated config of a plain tree (a compare entry, a pipeline stage); one UserError line if bad."""
    return validate_tree(tree, available_methods())


def check_training_inputs(config: TunelabConfig) -> None:
    """The checks a training run needs beyond the schema: required keys, files that must exist."""
    if not config.model:
        raise UserError("config error: model: required (a hub id, a local model folder or a run folder)")
    method = get_method(config.method.name)
    answers_eval_alone = isinstance(method, InContextStrategy) and not method.needs_training_data  # zeroshot, rag
    if config.data.train is None and not (answers_eval_alone and config.data.eval is not None):
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
