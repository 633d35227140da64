"""tunelab.runs.decision: a rerun keeps a finished run of the same config and budget, resumes an
interrupted one from its checkpoint, and trains anything else from the start, saying why."""

from __future__ import annotations

import json

import pytest

from tunelab.config.loading import as_recorded

from tunelab.methods.config_loading import load_config
from tunelab.runs.decision import RunAction, decide_run
from tunelab.run_files import PENDING
from tunelab.runs.run_directory import RunDirectory

BASE = ["model=some/model", "data.train=train.jsonl", "train.max_steps=10"]


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data.train is relative: the record holds it absolute, as train writes it
    return tmp_path / "run"


def config(folder, *overrides: str):
    return load_config(None, [*BASE, f"output_dir={folder}", *overrides])


def recorded(folder, *overrides: str, summary: dict | None = None, checkpoint: bool = False) -> RunDirectory:
    """A folder as ``train`` leaves it: config.yaml, then a checkpoint, then the summary."""
    run = RunDirectory(folder)
    run.start(as_recorded(config(folder, *overrides)).to_plain(), overwrite=False)
    if checkpoint:
        (run.checkpoints / "step-00000005").mkdir(parents=True)
    if summary is not None:
        run.summary_file.write_text(json.dumps(summary), encoding="utf-8")
    return run


def test_a_new_folder_is_trained(folder):
    decision = decide_run(config(folder))

    assert (decision.action, decision.why, decision.overwrite) == (RunAction.TRAIN, "", True)
    assert decision.log_line("entry lora", "lora") == f"entry lora: training (lora) in {folder}"


def test_a_finished_run_of_the_same_config_is_kept_whatever_the_speed_keys(folder):
    recorded(folder, summary={"steps": 10}, checkpoint=True)

    for overrides in ((), ("train.log_every=3", "train.threads=1", "train.save_every=2")):
        decision = decide_run(config(folder, *overrides))
        assert decision.action is RunAction.SKIP and decision.action.value == "skipped"
    assert decision.log_line("stage domain", "lora") == "stage domain: finished earlier, kept"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("data.max_length=64", "its folder held another run; replaced"),
        ("train.max_steps=20", "its folder held this run with another budget; replaced"),
    ],
)
def test_another_config_or_budget_is_trained_again(folder, change, why):
    recorded(folder, summary={"steps": 10}, checkpoint=True)

    decision = decide_run(config(folder, change))

    assert (decision.action, decision.why, decision.overwrite) == (RunAction.TRAIN, why, True)
    assert decision.log_line("entry lora", "lora").endswith(f"in {folder}: {why}")


def test_an_interrupted_run_resumes_from_its_checkpoint_as_train_would_accept(folder):
    run = recorded(folder, checkpoint=True)

    decision = decide_run(config(folder))

    assert (decision.action, decision.overwrite) == (RunAction.RESUME, False)
    to_train = decision.config_to_train(config(folder))
    assert to_train.train.resume is True and decision.config_to_train(config(folder, "train.resume=true")).train.resume
    assert decision.log_line("entry lora", "lora") == f"entry lora: resuming (lora) in {folder}"
    # the same notion of "same run" as train's own check: it accepts what the decision resumes
    run.check_can_start(as_recorded(to_train).to_plain(), resume=True, overwrite=False)


@pytest.mark.parametrize(
    ("summary", "checkpoint", "overrides", "why"),
    [
        (None, False, (), "interrupted before its first checkpoint"),
        ({"steps": 10, PENDING: "eval.generate"}, True, (), "its summary is not final (work left pending, or damaged)"),
        (None, True, ("method.name=adalora",), "method 'adalora' cannot resume mid-run"),
    ],
)
def test_an_unfinished_run_that_cannot_resume_is_trained_from_the_start(folder, summary, checkpoint, overrides, why):
    recorded(folder, *overrides, summary=summary, checkpoint=checkpoint)

    decision = decide_run(config(folder, *overrides))

    assert (decision.action, decision.why) == (RunAction.TRAIN, why)
    assert decision.config_to_train(config(folder, "train.resume=true")).train.resume is False


def test_the_caller_can_ask_for_training_again_and_say_why(folder):
    recorded(folder, summary={"steps": 10})

    decision = decide_run(config(folder), retrain_because="only this entry is asked for")

    assert (decision.action, decision.why) == (RunAction.TRAIN, "only this entry is asked for")


def test_a_folder_with_a_damaged_config_or_other_files_is_trained(folder):
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert decide_run(config(folder)).why == "its folder held another run; replaced"

    (folder / "config.yaml").write_text("model: [unclosed\n")
    assert decide_run(config(folder)).why == "its config.yaml cannot be read; replaced"


def test_a_run_recorded_with_the_precision_auto_became_is_kept_by_a_rerun_of_auto(folder, monkeypatch):
    import torch

    # a machine whose GPU computes in bf16: train records bf16 for the default precision, auto
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    run = recorded(folder, summary={"steps": 10}, checkpoint=True)
    assert run.config_file.read_text(encoding="utf-8").count("precision: bf16") == 1

    assert decide_run(config(folder)).action is RunAction.SKIP
    assert decide_run(config(folder, "train.precision=bf16")).action is RunAction.SKIP
    assert decide_run(config(folder, "train.precision=fp32")).why == "its folder held another run; replaced"


def test_a_run_recorded_in_fp32_before_auto_is_kept_on_a_gpu_machine(folder, monkeypatch):
    import torch

    run = RunDirectory(folder)
    run.start(as_recorded(config(folder, "train.precision=fp32")).to_plain(), overwrite=False)
    run.summary_file.write_text(json.dumps({"steps": 10}), encoding="utf-8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)

    assert decide_run(config(folder)).action is RunAction.SKIP  # auto: the recorded fp32, not bf16
