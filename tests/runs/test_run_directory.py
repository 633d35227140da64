"""RunDirectory: which folders a run may start in, and the metrics file a resumed run relies on."""

from __future__ import annotations

import json

import pytest

from tunelab.methods.config_loading import load_config
from tunelab.errors import UserError
from tunelab.runs.run_directory import RunDirectory

BASE = ["model=some/model", "data.train=train.jsonl", "method.r=4", "train.max_steps=10"]


def plain(*overrides: str) -> dict:
    return load_config(None, [*BASE, *overrides]).to_plain()


@pytest.fixture()
def existing_run(tmp_path) -> RunDirectory:
    """A folder holding a run started with ``plain()``."""
    run = RunDirectory(tmp_path / "run")
    run.start(plain(), overwrite=False)
    (run.path / "summary.json").write_text("{}", encoding="utf-8")
    (run.checkpoints / "step-00000002").mkdir(parents=True)
    return run


def refusal(run: RunDirectory, config: dict, resume: bool = False, overwrite: bool = False) -> str:
    with pytest.raises(UserError) as caught:
        run.check_can_start(config, resume=resume, overwrite=overwrite)
    return str(caught.value)


# --- check_can_start ------------------------------------------------------------------------------


def test_a_new_or_empty_folder_is_accepted(tmp_path):
    RunDirectory(tmp_path / "new").check_can_start(plain(), resume=False, overwrite=False)
    (tmp_path / "empty").mkdir()
    RunDirectory(tmp_path / "empty").check_can_start(plain(), resume=False, overwrite=False)


def test_a_folder_with_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    message = refusal(RunDirectory(tmp_path), plain())
    assert "holds no tunelab run" in message and "--overwrite" in message
    assert "holds no tunelab run" in refusal(RunDirectory(tmp_path), plain(), resume=True)


def test_a_file_as_output_dir_is_refused(tmp_path):
    (tmp_path / "run").write_text("", encoding="utf-8")
    assert "is a file" in refusal(RunDirectory(tmp_path / "run"), plain())


def test_an_existing_run_is_refused_without_resume_or_overwrite(existing_run):
    message = refusal(existing_run, plain())  # even the very same config
    assert "already holds a run" in message
    assert "--overwrite" in message and "train.resume=true" in message


def test_overwrite_accepts_any_folder(existing_run, tmp_path):
    existing_run.check_can_start(plain("method.r=16"), resume=False, overwrite=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine", encoding="utf-8")
    RunDirectory(tmp_path / "other").check_can_start(plain(), resume=False, overwrite=True)


@pytest.mark.parametrize(
    "changes",
    [
        [],
        ["train.max_steps=50"],
        ["train.epochs=3", "train.save_every=5", "train.eval_every=5", "train.log_every=1", "train.keep_checkpoints=4"],
    ],
    ids=["same_config", "more_steps", "schedule_of_saving_and_logging"],
)
def test_resume_accepts_the_same_run(existing_run, changes):
    existing_run.check_can_start(plain("train.resume=true", *changes), resume=True, overwrite=False)


@pytest.mark.parametrize(
    "changes",
    [["model=other/model"], ["method=full"], ["method.r=16"], ["train.lr=0.1"], ["data.max_length=64"]],
    ids=["model", "method", "method_option", "learning_rate", "data"],
)
def test_resume_refuses_a_different_run(existing_run, changes):
    message = refusal(existing_run, plain("train.resume=true", *changes), resume=True)
    assert "holds a different run" in message


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.start(plain(), overwrite=False)
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        run.check_can_start(plain("train.resume=true"), resume=True, overwrite=False)


def test_resume_accepts_the_same_folder_spelled_differently(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    RunDirectory("runs/a").start(plain("output_dir=runs/a"), overwrite=False)
    (RunDirectory("runs/a").checkpoints / "step-00000001").mkdir(parents=True)

    RunDirectory(tmp_path / "runs" / "a").check_can_start(
        plain(f"output_dir={tmp_path / 'runs' / 'a'}", "train.resume=true"), resume=True, overwrite=False
    )


def test_start_writes_the_config_and_overwrite_clears_the_old_run(existing_run):
    (existing_run.path / "adapter_model.safetensors").write_bytes(b"old")

    existing_run.start(plain("method.r=16"), overwrite=True)

    assert sorted(path.name for path in existing_run.path.iterdir()) == ["config.yaml"]
    assert load_config(existing_run.config_file).method.r == 16


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_are_read_back_in_order(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.read_metrics() == []
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "loss": 1.0 / step})

    assert run.read_metrics() == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}, {"step": 3, "loss": 1.0 / 3}]


def test_keep_metrics_until_drops_later_records(tmp_path):
    run = RunDirectory(tmp_path)
    for step in (10, 20, 30, 40):
        run.append_metrics({"step": step, "loss": 0.1})

    run.keep_metrics_until(20)

    assert [record["step"] for record in run.read_metrics()] == [10, 20]
    run.append_metrics({"step": 30, "loss": 0.2})  # the resumed run logs again after them
    assert [record["step"] for record in run.read_metrics()] == [10, 20, 30]


def test_a_metrics_line_cut_short_is_skipped(tmp_path):
    run = RunDirectory(tmp_path)
    run.append_metrics({"step": 1, "loss": 2.0})
    run.append_metrics({"step": 2, "loss": 1.5})
    text = run.metrics_file.read_text(encoding="utf-8")
    run.metrics_file.write_text(text + json.dumps({"step": 3, "loss": 1.0})[:9], encoding="utf-8")  # killed mid-write

    assert run.read_metrics() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    run.keep_metrics_until(2)
    assert run.metrics_file.read_text(encoding="utf-8") == text
