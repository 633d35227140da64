"""The run folder (``output_dir``) and everything written into it.

Layout::

    config.yaml      the resolved config
    metrics.jsonl    one JSON object per logged step
    README.md        the model card (base, method, data with hashes, budget, results, how to load)
    summary.json     the final figures (written last: its presence marks a finished run, unless it
                     names work still ``pending``, such as the answers of eval.generate)
    <artifact>       adapter or whole model + tokenizer, loadable by transformers / PEFT
    checkpoints/     step-N folders for resuming

It refuses a folder that holds something else (a different run, unrelated files) unless the
user asks to overwrite it, and every file is written atomically. What "the same run" means is
``holds_same_run``'s: ``train`` (``check_can_start``) and the skip / resume / train decision of
compare and pipeline (decision.py) both go by it; reading the files back is tunelab.run_files'.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tunelab.errors import UserError
from tunelab.atomic import write_json_atomic, write_text_atomic, write_yaml_atomic
from tunelab.run_files import RUN_CONFIG_FILE, RUN_SUMMARY_FILE, read_run_config

# Keys that may change between a run and its resumption without making it a different run.
RESUMABLE_CHANGES = {
    "train": {
        "resume",
        "max_steps",
        "max_tokens",
        "epochs",
        "save_every",
        "eval_every",
        "log_every",
        "keep_checkpoints",
        "nan_policy",
        "nan_max_skips",
        "report_to",
        "report_project",
        # how fast, not what: the same run on another thread count, compiled or not, logits chunked or not
        "threads",
        "compile",
        "chunked_loss",
    },
}
# The budget among them: train.resume=true may raise it (train on to a larger max_steps), but a run
# that compare or pipeline keeps or resumes on its own must have the budget its config now asks for.
BUDGET_KEYS = ("max_steps", "max_tokens", "epochs")


def _identity(plain_config: dict[str, Any], with_budget: bool) -> dict[str, Any]:
    identity = json.loads(json.dumps(plain_config))
    identity.pop("output_dir", None)  # the same folder may be named another way, or moved
    for section, keys in RESUMABLE_CHANGES.items():
        for key in keys:
            if not (with_budget and section == "train" and key in BUDGET_KEYS):
                identity.get(section, {}).pop(key, None)
    return identity


class RunDirectory:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    @property
    def config_file(self) -> Path:
        return self.path / RUN_CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_file(self) -> Path:
        return self.path / RUN_SUMMARY_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def is_empty(self) -> bool:
        return not self.path.exists() or not any(self.path.iterdir())

    def check_can_start(self, plain_config: dict[str, Any], resume: bool, overwrite: bool) -> None:
        """Refuse a folder holding something else; call before anything is written."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"output_dir {self.path} is a file")
        if self.is_empty() or overwrite:
            return
        if not self.config_file.is_file():
            raise UserError(
                f"output_dir {self.path} is not empty and holds no tunelab run; "
                "choose another folder or pass --overwrite"
            )
        if not resume:
            raise UserError(
                f"output_dir {self.path} already holds a run; pass --overwrite to replace it "
                "or train.resume=true to continue it"
            )
        if not self.holds_same_run(plain_config):
            raise UserError(
                f"output_dir {self.path} holds a different run (its config.yaml differs); "
                "choose another folder or pass --overwrite"
            )
        if not self.has_checkpoint():
            raise UserError(
                f"output_dir {self.path} holds no checkpoint to resume from (set train.save_every); "
                "pass --overwrite to start the run again"
            )

    def holds_same_run(self, plain_config: dict[str, Any], same_budget: bool = False) -> bool:
        """Whether config.yaml records a run of ``plain_config``: equal but for the folder's name and
        the keys a resumed run may change (``RESUMABLE_CHANGES``); with ``same_budget``, the budget
        must be equal too."""
        if not self.config_file.is_file():
            return False
        recorded = read_run_config(self.path)
        return _identity(recorded, same_budget) == _identity(plain_config, same_budget)

    def has_checkpoint(self) -> bool:
        return any(self.checkpoints.glob("step-*"))

    def start(self, plain_config: dict[str, Any], overwrite: bool) -> None:
        if overwrite and self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        write_yaml_atomic(self.config_file, plain_config)

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.is_file():
            return []
        lines = self.metrics_file.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill mid-write
                continue
        return records

    def keep_metrics_until(self, step: int) -> None:
        """Drop metrics logged after ``step`` (a resumed run logs them again)."""
        kept = [record for record in self.read_metrics() if record["step"] <= step]
        write_text_atomic(self.metrics_file, "".join(json.dumps(record) + "\n" for record in kept))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """The summary, and the model card built from it and config.yaml (so the two never disagree)."""
        from tunelab.runs.model_card import CARD_FILE, model_card

        write_text_atomic(self.path / CARD_FILE, model_card(self.path, summary))
        write_json_atomic(self.summary_file, summary)

    def install_artifact(self, staging: Path) -> None:
        """Move every file saved in ``staging`` into the run folder, each by an atomic rename.

        The artifact is saved by libraries (``save_pretrained``) into a whole staging folder, so it is
        installed by renames here rather than written through ``tunelab.atomic``."""
        for item in sorted(staging.iterdir()):
            target = self.path / item.name
            if target.is_dir() and item.is_dir():
                shutil.rmtree(target)
            item.replace(target)
        shutil.rmtree(staging, ignore_errors=True)
