"""Run a comparison: train every entry under the same budget and record each.

Each entry trains with ``tunelab.training.recipe.train`` into ``output_dir/runs/<name>``. Running a
comparison again keeps what is done, as ``runs.decision`` decides for pipelines too: an entry whose
folder holds its finished run (same config, same budget) is not retrained; an entry that was
interrupted (its folder has checkpoints but no summary) resumes from its latest checkpoint; a failed
entry is tried again. ``only=NAME`` trains that entry from scratch and leaves the others as they are.

A failing entry (bad options, out of memory, a library's error, a Ray worker that died) is
recorded with its error's first line and the comparison goes on. ``results.json`` /
``results.csv`` are rewritten after every entry, in the file's entry order, so an interrupted
comparison keeps the records of the entries it finished; the report (``report.html``) is written
at the end. Where entries train is the executor's choice (``executors``: in this process, one after
another, or as Ray tasks); what they do there is ``_run_entry``, the same for every executor. This
module does not read figures out of run folders (``results``) nor draw them (``report``).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tunelab.compare.executors import EntryExecutor, EntryOutcome, make_executor
from tunelab.compare.report import write_report
from tunelab.compare.results import (
    FAILED,
    FINISHED,
    NOT_RUN,
    RESULTS_JSON,
    collect_environment,
    entry_record,
    read_results,
    write_results,
)
from tunelab.compare.spec import ComparisonSpec, Entry, entry_config
from tunelab.compare.tuning import tune_learning_rate
from tunelab.config.schema import TunelabConfig
from tunelab.errors import UserError, first_line
from tunelab.runs.decision import RunAction, decide_run
from tunelab.runs.lock import FolderLock
from tunelab.training.interrupt import TrainingInterrupted

log = logging.getLogger("tunelab")


@dataclass
class ComparisonResult:
    """What ``run_comparison`` returns: the records (in the file's entry order) and where they went."""

    output_dir: Path
    records: list[dict[str, Any]]
    environment: dict[str, Any]
    results_json: Path
    results_csv: Path
    report_html: Path


def _train_entry(entry: Entry, config: TunelabConfig, from_scratch: bool, progress: bool) -> str:
    """Train the entry unless its folder holds its finished run; returns what was done."""
    from tunelab.training.recipe import train

    decision = decide_run(config, retrain_because="only this entry is asked for" if from_scratch else None)
    log.info(decision.log_line(f"entry {entry.name}", config.method.name))
    if decision.action is not RunAction.SKIP:
        train(decision.config_to_train(config), overwrite=decision.overwrite, progress=progress)
    return decision.action.value


def _free_memory() -> None:
    """Drop what a finished or failed entry left behind before the next one loads its model."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _run_entry(entry: Entry, spec: ComparisonSpec, from_scratch: bool, progress: bool) -> dict[str, Any]:
    config = entry_config(entry)
    method = config.method.model_dump(mode="json")
    tuning = None
    try:
        if entry.tune_lr:
            tuning = tune_learning_rate(entry, spec.budget, spec.output_dir / "tuning" / entry.name, progress)
            chosen = config.train.model_copy(update={"lr": tuning["chosen"]})
            config = config.model_copy(update={"train": chosen})
        action = _train_entry(entry, config, from_scratch, progress)
    except Exception as error:  # one entry's failure (a bad option, out of memory) must not end the comparison
        log.error(f"entry {entry.name}: failed: {first_line(error)}")
        log.debug(f"entry {entry.name}: traceback", exc_info=True)
        return _failed_record(entry, first_line(error))
    finally:
        _free_memory()
    record = entry_record(entry.name, entry.run_dir, FINISHED, method=method, action=action)
    return {**record, "tuning": tuning} if tuning else record


def _failed_record(entry: Entry, reason: str) -> dict[str, Any]:
    method = entry_config(entry).method.model_dump(mode="json")
    return entry_record(entry.name, entry.run_dir, FAILED, reason, method=method, action=FAILED)


def _outcome_record(outcome: EntryOutcome) -> dict[str, Any]:
    """The entry's record; where its worker gave none (it died), a failure with the reason."""
    record = outcome.record if outcome.record is not None else _failed_record(outcome.entry, str(outcome.lost))
    return _seeded(outcome.entry, record)


def _untouched_record(entry: Entry, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The record of an entry ``only`` leaves alone: its finished run, else what was recorded before."""
    config = entry_config(entry)
    method = config.method.model_dump(mode="json")
    if decide_run(config).action is RunAction.SKIP:
        return entry_record(entry.name, entry.run_dir, FINISHED, method=method, action=RunAction.SKIP.value)
    if previous is not None:
        return {**previous, "action": NOT_RUN}
    return entry_record(entry.name, entry.run_dir, NOT_RUN, method=method, action=NOT_RUN)


def _seeded(entry: Entry, record: dict[str, Any]) -> dict[str, Any]:
    """With ``seeds: N``, a run's record says which entry and which seed it is."""
    return {**record, "entry": entry.group, "seed": entry.seed} if entry.group else record


def _previous_records(folder: Path) -> dict[str, dict[str, Any]]:
    if not (folder / RESULTS_JSON).is_file():
        return {}
    try:
        records, _ = read_results(folder)
    except UserError:
        return {}
    return {str(record.get("name")): record for record in records if isinstance(record, dict)}


def _check_inputs(entries: list[Entry]) -> None:
    """Missing files and model folders answer before the first entry trains."""
    from tunelab.methods.config_loading import check_training_inputs

    for entry in entries:
        try:
            check_training_inputs(entry_config(entry))
        except UserError as error:
            raise UserError(f"entry '{entry.name}': {error}") from None


def run_comparison(
    spec: ComparisonSpec,
    only: str | None = None,
    progress: bool = True,
    executor: str | EntryExecutor = "sequential",
    ray_address: str | None = None,
) -> ComparisonResult:
    """Train every entry (or only ``only``, from scratch); write results.json, results.csv, report.html.

    ``executor``: ``sequential`` (this process, one entry after another) or ``ray`` (one Ray task per
    entry, on a local Ray or the cluster at ``ray_address`` / ``RAY_ADDRESS``).
    """
    chosen = spec.runs_of(only) if only is not None else spec.entries
    runner = make_executor(executor, ray_address) if isinstance(executor, str) else executor
    _check_inputs(chosen)
    with FolderLock(spec.output_dir, "comparison folder"):
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        environment = collect_environment()
        previous = _previous_records(spec.output_dir)
        done = {
            entry.name: _seeded(entry, _untouched_record(entry, previous.get(entry.name)))
            for entry in spec.entries
            if entry not in chosen
        }
        work = partial(_run_entry, spec=spec, from_scratch=only is not None, progress=progress and runner.in_process)
        try:
            for outcome in runner.run(chosen, work, spec.output_dir):
                done[outcome.entry.name] = _outcome_record(outcome)
                write_results(spec.output_dir, _in_file_order(spec, done), environment)
        except TrainingInterrupted as interruption:
            unfinished = [entry.name for entry in chosen if entry.name not in done]
            where = f"in entry '{unfinished[0]}'" if runner.in_process else f"before {', '.join(unfinished)} finished"
            kept = len(chosen) - len(unfinished)
            raise TrainingInterrupted(
                f"comparison interrupted {where} ({interruption}); {kept} finished entries are kept; "
                "run the same tunelab compare to go on"
            ) from None
        records = _in_file_order(spec, done)
        results_json, results_csv = write_results(spec.output_dir, records, environment)
        report_html = write_report(records, environment, spec.output_dir)
    return ComparisonResult(spec.output_dir, records, environment, results_json, results_csv, report_html)


def _in_file_order(spec: ComparisonSpec, done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [done[entry.name] for entry in spec.entries if entry.name in done]
