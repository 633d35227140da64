"""Learning-rate tuning inside a comparison (``tune: {lr: [...]}`` or ``tune: auto``).

An entry that tunes carves a validation split out of its training data (20%, seeded, stratified
by label for classification), trains once per learning rate on the rest at a quarter of the
budget, keeps the value with the best validation figure (accuracy for classification, else the
validation loss), and then trains its final run at the full budget on all the training data with
that value. The trials live in ``<comparison>/tuning/<entry>/``; their figures and time go into the
entry's record (``tuning``), apart from the final run's, so that time and cost stay comparable.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

from tunelab.atomic import write_text_atomic
from tunelab.compare.spec import Budget, Entry, entry_config
from tunelab.config.schema import TunelabConfig
from tunelab.errors import UserError
from tunelab.run_files import read_summary
from tunelab.runs.decision import RunAction, decide_run

log = logging.getLogger("tunelab")

VALIDATION_SHARE = 0.2
TRIAL_SHARE = 0.25  # of the comparison's budget, per trial


def validation_split(config: TunelabConfig, folder: Path) -> tuple[Path, Path]:
    """Training rows split into (rest, validation) JSONL files, seeded, stratified by label."""
    import json

    from tunelab.data.formats import rename_columns
    from tunelab.data.loading import load_rows

    path = Path(config.data.train)
    rows = [dict(row) for row in rename_columns(load_rows(path), config.data.columns, path)]
    rng = random.Random(config.train.seed)
    classification = config.task == "classification"
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get("label")) if classification else "", []).append(row)
    rest, validation = [], []
    for key in sorted(groups):
        members = groups[key][:]
        rng.shuffle(members)
        held = max(1, round(len(members) * VALIDATION_SHARE)) if len(members) > 1 else 0
        validation += members[:held]
        rest += members[held:]
    if not validation or not rest:
        raise UserError(f"{path}: too few rows ({len(rows)}) to hold out a validation split for tuning")
    folder.mkdir(parents=True, exist_ok=True)
    files = folder / "train.jsonl", folder / "validation.jsonl"
    for file, part in zip(files, (rest, validation), strict=True):
        write_text_atomic(file, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in part))
    return files


def trial_tree(entry: Entry, budget: Budget, lr: float, train: Path, validation: Path, run_dir: Path) -> dict:
    """The entry's config for one trial: the rest of the training data, the validation split as
    eval data, a quarter of the budget, this learning rate."""
    import copy

    tree = copy.deepcopy(entry.tree)
    tree["output_dir"] = str(run_dir)
    data = tree.setdefault("data", {})
    data.update({"train": str(train), "eval": str(validation)})
    data.pop("eval_split", None)
    section = tree.setdefault("train", {})
    section["lr"] = lr
    if budget.kind == "epochs":
        section["epochs"] = 1
    else:
        section[budget.train_key] = max(1, math.ceil(budget.amount * TRIAL_SHARE))
    section.pop("save_every", None)
    tree.setdefault("eval", {})["generate"] = False  # trials are ranked by validation loss or accuracy
    return tree


def trial_score(summary: dict[str, Any]) -> tuple[str, float, bool]:
    """(figure, value, higher is better) a trial is ranked by."""
    if isinstance(summary.get("accuracy"), int | float):
        return "accuracy", float(summary["accuracy"]), True
    return "eval_loss", float(summary.get("eval_loss", math.inf)), False


def tune_learning_rate(entry: Entry, budget: Budget, folder: Path, progress: bool) -> dict[str, Any]:
    """Train one short trial per learning rate; the chosen one and every trial's figures."""
    from tunelab.training.recipe import train

    config = entry_config(entry)
    train_file, validation_file = validation_split(config, folder / "data")
    trials = []
    for lr in entry.tune_lr:
        run_dir = folder / f"lr-{lr:g}"
        tree = trial_tree(entry, budget, lr, train_file, validation_file, run_dir)
        trial = entry_config(Entry(entry.name, tree, run_dir))
        if decide_run(trial).action is RunAction.SKIP:
            summary = read_summary(run_dir)  # tried earlier with the same settings: kept
        else:
            log.info(f"entry {entry.name}: tuning, lr {lr:g}")
            summary = train(trial, overwrite=True, progress=progress).summary
        name, value, higher = trial_score(summary)
        trials.append({"lr": lr, name: value, "train_time_s": summary.get("train_time_s"), "steps": summary["steps"]})
    scored = [trial for trial in trials if math.isfinite(trial[name])]
    if not scored:
        raise UserError(f"entry {entry.name}: no learning rate tried gave a finite {name}")
    best = max(scored, key=lambda trial: trial[name] if higher else -trial[name])
    log.info(f"entry {entry.name}: tuning chose lr {best['lr']:g} ({name} {best[name]:.4f})")
    return {
        "param": "lr",
        "chosen": best["lr"],
        "ranked_by": name,  # the validation figure: accuracy, else eval_loss
        "trials": trials,
        "tuning_time_s": sum(trial["train_time_s"] or 0.0 for trial in trials),
    }
