"""Reading a run folder that ``train`` wrote: whether a folder holds a run, its config.yaml and
summary.json, and what a model was trained as.

The one place these files are read; ``RunDirectory`` (runs/run_directory.py) writes them. A folder
with both files holds a trained run that loads as a model (``is_run_folder``); it is finished once
its summary names no work still ``PENDING`` (``is_finished_run``), which is what skip / resume
decisions go by (runs/decision.py). It sits in the base layer, not in runs/, and imports nothing of
tunelab, because a run folder is a model reference: every layer that takes one (models, features,
methods, inference, evaluation, serve) must recognise it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

RUN_CONFIG_FILE = "config.yaml"
RUN_SUMMARY_FILE = "summary.json"
# Written by `tunelab merge` beside the merged model: what the run trained on, which generation needs
# (the chat template's use above all) and a merged folder would otherwise have lost.
MERGE_RECORD_FILE = "tunelab-merge.json"
# A summary.json key naming work still to do (eval.generate's answers): the run loads, but is not finished.
PENDING = "pending"


def is_run_folder(folder: str | Path) -> bool:
    """A tunelab run with its trained artifact: our config.yaml and summary.json (the summary is
    written last), so the folder loads as a model."""
    folder = Path(folder)
    return (folder / RUN_CONFIG_FILE).is_file() and (folder / RUN_SUMMARY_FILE).is_file()


def is_finished_run(folder: str | Path) -> bool:
    """A run folder whose summary names no work still pending: nothing is left to do in it."""
    if not is_run_folder(folder):
        return False
    try:
        return PENDING not in read_summary(folder)
    except (OSError, ValueError):
        return False


def read_run_config(folder: str | Path) -> dict[str, Any]:
    """The run's config.yaml, as ``train`` recorded it (local paths absolute)."""
    return yaml.safe_load((Path(folder) / RUN_CONFIG_FILE).read_text(encoding="utf-8")) or {}


def read_summary(folder: str | Path) -> dict[str, Any]:
    """The run's summary.json: its final figures."""
    return json.loads((Path(folder) / RUN_SUMMARY_FILE).read_text(encoding="utf-8"))


def run_task(reference: str | Path) -> str | None:
    """The task a run trained (``causal_lm``, ``classification``); None for other references."""
    if not is_run_folder(reference):
        return None
    try:
        return read_summary(reference).get("task")
    except (OSError, ValueError):
        return None


def training_record(reference: str | Path) -> dict[str, Any]:
    """What a model was trained as (``task``, ``data_format``, ...): a run's summary, a merged
    folder's merge record, or nothing for any other reference."""
    folder = Path(reference)
    for name in (RUN_SUMMARY_FILE, MERGE_RECORD_FILE) if is_run_folder(folder) else (MERGE_RECORD_FILE,):
        try:
            return json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return {}
