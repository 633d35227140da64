"""Experiment tracking (``train.report_to``: TensorBoard, MLflow, W&B, ...) through accelerate.

accelerate's own trackers do the logging (``Accelerator(log_with=...)``, ``init_trackers``, ``log``,
``end_training``); this module only decides what they are given: the project every run of a
comparison is grouped under (``train.report_project``; a comparison sets its own name), the run's
name (its folder's), the resolved config flattened into hyperparameters, every metrics line as it
is written, and the final figures of the summary at the end. metrics.jsonl stays the source of
truth: a tracker is a copy of it.

TensorBoard event files go under ``<run folder>/tensorboard/<project>``; MLflow follows
``MLFLOW_TRACKING_URI`` (its own default otherwise); W&B follows its own settings (``WANDB_MODE``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import UserError, first_line

if TYPE_CHECKING:
    from accelerate import Accelerator

DEFAULT_PROJECT = "tunelab"
TENSORBOARD_FOLDER = "tensorboard"
# summary figures logged once at the end, as final/<name>
FINAL_FIGURES = (
    "train_loss",
    "eval_loss",
    "accuracy",
    "macro_f1",
    "json_f1",
    "exact_match",
    "rouge_l",
    "tokens_per_s",
    "peak_memory_bytes",
    "trainable_params",
    "train_time_s",
)
# trackers our extras install (the rest: pip install <name>, accelerate's names are their packages')
TRACKER_EXTRAS = ("tensorboard", "mlflow")


def known_trackers() -> list[str]:
    from accelerate.utils import LoggerType

    return [str(kind.value) for kind in LoggerType if kind.value != "all"]


def check_trackers(report_to: list[str]) -> None:
    """Each name is a tracker accelerate has, and its package is installed: one line otherwise."""
    import importlib.util

    known = known_trackers()
    for name in report_to:
        if name not in known:
            raise UserError(f"config error: train.report_to: unknown tracker '{name}' (known: {', '.join(known)})")
        if importlib.util.find_spec(name) is None:
            extra = f"pip install 'tunelab[{name}]'" if name in TRACKER_EXTRAS else f"pip install {name}"
            raise UserError(f"config error: train.report_to: {name} needs its package: {extra}")


def accelerator_options(report_to: list[str], run_folder: Path) -> dict[str, Any]:
    """The ``Accelerator`` arguments that route its trackers' files into the run folder."""
    if not report_to:
        return {}
    from accelerate.utils import ProjectConfiguration

    check_trackers(report_to)
    project = ProjectConfiguration(project_dir=str(run_folder), logging_dir=str(run_folder / TENSORBOARD_FOLDER))
    return {"log_with": list(report_to), "project_config": project}


def hyperparameters(plain_config: dict[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """The config as flat ``section.key`` hyperparameters of the types every tracker takes."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in plain_config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(hyperparameters(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:  # None, lists, empty mappings: as JSON text
            flat[name] = json.dumps(value)
    return flat


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {
        key: value
        for key, value in record.items()
        if key != "step" and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    }


class RunTracking:
    """The trackers of one run: started once the run folder is, ended with the run however it ends."""

    def __init__(self) -> None:
        self.accelerator: Accelerator | None = None

    def start(
        self, accelerator: Accelerator, plain_config: dict[str, Any], run_folder: Path, project: str | None
    ) -> None:
        if not accelerator.log_with:
            return
        self.accelerator = accelerator
        project = project or DEFAULT_PROJECT
        name = Path(run_folder).name
        try:
            accelerator.init_trackers(
                project,
                config=hyperparameters(plain_config),
                init_kwargs={"mlflow": {"run_name": name}, "wandb": {"name": name, "group": project}},
            )
        except Exception as error:  # each tracker's backend fails its own way (a URI, a login, a store)
            trackers = ", ".join(str(kind) for kind in accelerator.log_with)
            raise UserError(
                f"train.report_to: {trackers} could not start: {first_line(error)} "
                "(fix the tracker's settings, then run again with --overwrite)"
            ) from None

    def log(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl line, at its step."""
        if self.accelerator is not None:
            self.accelerator.log(_numbers(record), step=int(record["step"]))

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """The summary's final figures (where the run finished), then close every tracker."""
        if self.accelerator is None:
            return
        if summary is not None:
            figures = _numbers({key: summary.get(key) for key in FINAL_FIGURES})
            self.accelerator.log({f"final/{key}": value for key, value in figures.items()}, step=summary.get("steps"))
        self.accelerator.end_training()
        self.accelerator = None
