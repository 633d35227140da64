"""Keep, resume or train: what a rerun of a comparison or a pipeline does with a run folder.

``compare`` (each entry, and each learning-rate trial) and ``pipeline`` (each stage) rerun into
folders they filled before, and decide the same way, here:

- **skip** (keep it): the folder holds the finished run (``reading.is_finished_run``) of this same
  config and budget (``RunDirectory.holds_same_run``);
- **resume**: the same run and budget was interrupted after a checkpoint, before its summary, and
  the method can resume mid-run;
- **train** (from the start, replacing what the folder holds): anything else, or when the caller says
  why it must be trained again (``only=NAME``; the stage a pipeline stage starts from was retrained).

``train`` itself decides nothing: it does what ``train.resume`` and ``--overwrite`` say, and
``RunDirectory.check_can_start`` refuses a folder holding a different run by the same notion of
"the same run". The budget counts here and not there: a user may resume a run on to a larger
``max_steps``, but a rerun must give what its config now asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from tunelab.run_files import is_finished_run
from tunelab.runs.run_directory import RunDirectory

if TYPE_CHECKING:
    from tunelab.config.schema import TunelabConfig


class RunAction(StrEnum):
    """What is done with the folder; the value is what results.json and pipeline.json record."""

    SKIP = "skipped"
    RESUME = "resumed"
    TRAIN = "trained"


@dataclass(frozen=True)
class RunDecision:
    action: RunAction
    folder: Path
    why: str = ""  # said for a folder whose run is not kept as it is, where there is something to say

    @property
    def overwrite(self) -> bool:
        """Train from the start, replacing whatever the folder holds (the caller owns the folder)."""
        return self.action is RunAction.TRAIN

    def config_to_train(self, config: TunelabConfig) -> TunelabConfig:
        """``config`` with ``train.resume`` as decided (pass ``overwrite`` beside it)."""
        resume = self.action is RunAction.RESUME
        return config.model_copy(update={"train": config.train.model_copy(update={"resume": resume})})

    def log_line(self, who: str, method: str) -> str:
        """The one line a rerun logs for it, ``who`` being e.g. ``entry lora`` or ``stage domain``."""
        if self.action is RunAction.SKIP:
            return f"{who}: finished earlier, kept"
        verb = "resuming" if self.action is RunAction.RESUME else "training"
        return f"{who}: {verb} ({method}) in {self.folder}" + (f": {self.why}" if self.why else "")


def decide_run(config: TunelabConfig, retrain_because: str | None = None) -> RunDecision:
    """Skip, resume or train the run ``config`` describes in its ``output_dir``; ``retrain_because``
    forces training from the start and says why."""
    from tunelab.config.loading import as_recorded
    from tunelab.methods.base import Method
    from tunelab.methods.registry import get_method

    run = RunDirectory(Path(config.output_dir).expanduser().absolute())
    plain = as_recorded(config).to_plain()  # as train records it in config.yaml
    if retrain_because:
        return RunDecision(RunAction.TRAIN, run.path, retrain_because)
    if not run.path.is_dir() or run.is_empty():
        return RunDecision(RunAction.TRAIN, run.path)  # train says what is wrong with a file in its place
    try:
        same_run = run.holds_same_run(plain)
        same_budget = same_run and run.holds_same_run(plain, same_budget=True)
    except (OSError, ValueError, yaml.YAMLError):
        return RunDecision(RunAction.TRAIN, run.path, "its config.yaml cannot be read; replaced")
    if not same_run:
        return RunDecision(RunAction.TRAIN, run.path, "its folder held another run; replaced")
    if not same_budget:
        return RunDecision(RunAction.TRAIN, run.path, "its folder held this run with another budget; replaced")
    if is_finished_run(run.path):
        return RunDecision(RunAction.SKIP, run.path)
    if run.summary_file.is_file():
        return RunDecision(RunAction.TRAIN, run.path, "its summary is not final (work left pending, or damaged)")
    if not run.has_checkpoint():
        return RunDecision(RunAction.TRAIN, run.path, "interrupted before its first checkpoint")
    method = get_method(config.method.name)
    if isinstance(method, Method) and not method.supports_resume:
        return RunDecision(RunAction.TRAIN, run.path, f"method '{config.method.name}' cannot resume mid-run")
    return RunDecision(RunAction.RESUME, run.path)
