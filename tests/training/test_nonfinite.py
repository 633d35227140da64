"""A loss or gradient that becomes non-finite stops the run with one line (exit 2), or with
``train.nan_policy=skip_step`` leaves the update out, counts it, and stops after N in a row."""

from __future__ import annotations

import math

import pytest

from conftest import training_config
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.training.nonfinite import NonFiniteGuard
from tunelab.training.recipe import train

EXPLODING = {"train.lr": 1e30, "train.max_grad_norm": "null", "train.max_steps": 30, "train.scheduler": "constant"}


def test_an_exploding_run_stops_with_one_line_and_no_model(tiny_llama, prompt_completion_file, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = [f"{key}={value}" for key, value in EXPLODING.items()]
    code = main(
        ["train", f"model={tiny_llama}", f"data.train={prompt_completion_file}", f"output_dir={run}", "--quiet"]
        + ["train.save_every=1", *overrides]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: step ") and "became non-finite at lr 1e+30" in err, err
    assert "the last good checkpoint is" in err and "lower train.lr" in err
    assert not (run / "summary.json").exists()


def test_skip_step_stops_after_n_in_a_row(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama, prompt_completion_file, tmp_path / "run", **EXPLODING, **{"train.nan_policy": "skip_step"}
    )
    with pytest.raises(UserError, match=r"non-finite for 5 steps in a row at lr 1e\+30"):
        train(config, progress=False)


def test_skip_step_counts_skips_and_recovers(tmp_path):
    guard = NonFiniteGuard("skip_step", max_consecutive=3)
    assert guard.check(1, 2.0, 1.0, 1e-3, tmp_path) is False
    assert guard.check(2, math.nan, 1.0, 1e-3, tmp_path) is True
    assert guard.check(3, 2.0, math.inf, 1e-3, tmp_path) is True
    assert guard.check(4, 1.9, 1.0, 1e-3, tmp_path) is False  # a good step resets the count in a row
    assert guard.check(5, math.nan, 1.0, 1e-3, tmp_path) is True
    assert guard.skipped == 3


def test_stop_names_the_step_what_and_the_lr(tmp_path):
    guard = NonFiniteGuard("stop", max_consecutive=3)
    (tmp_path / "step-00000005").mkdir()
    with pytest.raises(UserError) as raised:
        guard.check(7, 2.0, math.nan, 3e-4, tmp_path)
    assert str(raised.value).startswith("step 7: the gradient norm (nan) became non-finite at lr 0.0003; stopped")
    assert "step-00000005" in str(raised.value)
