"""tunelab.run_files: which folders hold a run, which runs are finished, and what a model was
trained as, read from the files ``RunDirectory`` writes."""

from __future__ import annotations

import json

from tunelab.run_files import (
    MERGE_RECORD_FILE,
    PENDING,
    is_finished_run,
    is_run_folder,
    read_run_config,
    read_summary,
    run_task,
    training_record,
)
from tunelab.runs.run_directory import RunDirectory

CONFIG = {"model": "/models/base", "method": {"name": "lora", "r": 8}, "train": {"max_steps": 4}}


def written_run(folder, summary):
    run = RunDirectory(folder)
    run.start(CONFIG, overwrite=False)
    if summary is not None:
        run.write_summary(summary)
    return folder


def test_a_run_is_a_run_folder_once_its_summary_is_written_and_finished_once_nothing_is_pending(tmp_path):
    started = written_run(tmp_path / "started", None)
    answering = written_run(tmp_path / "answering", {"task": "causal_lm", PENDING: "eval.generate"})
    finished = written_run(tmp_path / "finished", {"task": "causal_lm", "steps": 4})

    assert [is_run_folder(folder) for folder in (started, answering, finished)] == [False, True, True]
    assert [is_finished_run(folder) for folder in (started, answering, finished)] == [False, False, True]
    assert not is_run_folder(tmp_path / "absent") and not is_finished_run(tmp_path / "absent")


def test_the_config_and_summary_read_back_as_written(tmp_path):
    folder = written_run(tmp_path / "run", {"task": "classification", "labels": ["neg", "pos"]})

    assert read_run_config(folder) == CONFIG
    assert read_summary(folder) == {"task": "classification", "labels": ["neg", "pos"]}
    assert run_task(folder) == "classification" and run_task(str(folder)) == "classification"
    assert training_record(folder) == read_summary(folder)


def test_a_damaged_summary_is_not_finished_and_names_no_task(tmp_path):
    folder = written_run(tmp_path / "run", {"task": "causal_lm"})
    (folder / "summary.json").write_text("{cut short", encoding="utf-8")

    assert is_run_folder(folder) and not is_finished_run(folder)
    assert run_task(folder) is None


def test_a_merged_folder_keeps_its_training_record_and_other_folders_have_none(tmp_path):
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / MERGE_RECORD_FILE).write_text(json.dumps({"task": "causal_lm", "data_format": "chat"}))

    assert not is_run_folder(merged) and run_task(merged) is None
    assert training_record(merged) == {"task": "causal_lm", "data_format": "chat"}
    assert training_record(tmp_path / "hub-id-like") == {}
