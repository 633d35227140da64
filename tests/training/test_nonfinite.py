"""A loss or gradient that becomes non-finite stops the run with one line (exit 2), or with
``train.nan_policy=skip_step`` leaves the update out, counts it, and stops after N in a row."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from conftest import training_config
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.training.accelerator import new_accelerator
from tunelab.training.nonfinite import SCALER_MAX_OVERFLOWS, NonFiniteGuard
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


def test_the_loss_scalers_overflow_is_neither_stopped_nor_counted_as_non_finite(tmp_path):
    guard = NonFiniteGuard("stop", max_consecutive=3, loss_scaled=True)
    assert guard.check(1, 2.0, math.inf, 1e-3, tmp_path) is False  # the scaler skips this update itself
    guard.after_optimizer_step(1, scaler_skipped=True, lr=1e-3, checkpoints=tmp_path)
    guard.after_optimizer_step(2, scaler_skipped=False, lr=1e-3, checkpoints=tmp_path)
    assert (guard.skipped, guard.overflow_skipped) == (0, 1)
    with pytest.raises(UserError, match=r"step 3: the loss \(nan\)"):
        guard.check(3, math.nan, math.inf, 1e-3, tmp_path)  # a non-finite loss is no overflow of the scaler's


def test_the_loss_scaler_overflowing_at_any_scale_stops_the_run(tmp_path):
    guard = NonFiniteGuard("stop", max_consecutive=3, loss_scaled=True)
    for step in range(1, SCALER_MAX_OVERFLOWS):
        guard.after_optimizer_step(step, scaler_skipped=True, lr=1e-3, checkpoints=tmp_path)
    with pytest.raises(UserError, match=f"overflowed for {SCALER_MAX_OVERFLOWS} steps in a row"):
        guard.after_optimizer_step(SCALER_MAX_OVERFLOWS, scaler_skipped=True, lr=1e-3, checkpoints=tmp_path)


def with_loss_scaler(monkeypatch, init_scale: float) -> list[list[float]]:
    """Runs train with accelerate's fp16 loss scaling (a GradScaler, gradients unscaled before
    clipping), which accelerate sets up only on a GPU; here on the CPU, over fp32 compute.
    Returns, per run, the scale each optimizer step used."""
    import torch
    from accelerate.optimizer import AcceleratedOptimizer

    from tunelab.training import recipe

    scales: list[list[float]] = []

    def scaled_accelerator(precision, options=None):
        accelerator = new_accelerator(precision, options)
        scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
        accelerator.scaler = scaler
        used, update = [], scaler.update
        scales.append(used)

        def recording_update(new_scale=None):
            used.append(scaler.get_scale())
            update(new_scale)

        scaler.update = recording_update

        def unscale_gradients(optimizer=None):  # accelerate's, which it runs only under fp16
            for opt in accelerator._optimizers:
                scaler.unscale_(opt.optimizer if isinstance(opt, AcceleratedOptimizer) else opt)

        accelerator.unscale_gradients = unscale_gradients
        return accelerator

    monkeypatch.setattr(recipe, "new_accelerator", scaled_accelerator)
    return scales


@pytest.mark.parametrize("method", ["lora", "adalora"])
def test_a_loss_scaled_run_goes_on_through_the_scalers_overflows(
    tiny_llama, prompt_completion_file, tmp_path, monkeypatch, method
):
    import json

    import torch

    # a scale that overflows fp32 at first: the scaler skips updates and halves it until it fits
    with_loss_scaler(monkeypatch, init_scale=2.0**127)
    options = {"train.max_steps": 12, "train.scheduler": "linear", "method.name": method}
    budget_reads = []  # adalora: whether the gradients its rank budget read were finite, per read
    if method == "adalora":  # its rank budget reads the gradients after every applied update
        options.update({"method.init_r": 6, "method.target_r": 2})
        from peft.tuners.adalora.layer import RankAllocator

        update_ipt = RankAllocator.update_ipt

        def reading(self, model):
            grads = [p.grad for name, p in model.named_parameters() if "lora_" in name and p.grad is not None]
            budget_reads.append(all(bool(torch.isfinite(grad).all()) for grad in grads))
            return update_ipt(self, model)

        monkeypatch.setattr(RankAllocator, "update_ipt", reading)
    result = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **options), progress=False)
    overflows = result.summary["overflow_skipped_steps"]
    assert 2 <= overflows < 12 and "skipped_steps" not in result.summary
    trained = {name: p for name, p in result.model.named_parameters() if "lora_B" in name}
    assert trained and any(bool(p.abs().sum() > 0) for p in trained.values())  # the later updates were applied
    assert all(bool(torch.isfinite(p).all()) for p in result.model.parameters())
    if method == "adalora":  # its importance scores never forget: one overflow's inf gradients would stay
        assert budget_reads and all(budget_reads)
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    rates = [json.loads(line)["lr"] for line in lines]
    # the schedule waits while the scaler skips: it moves once per applied update (the last step's
    # own move is not logged), not once per step
    moves = sum(later < earlier for earlier, later in pairwise(rates))
    assert moves in (11 - overflows, 12 - overflows) and rates[0] == 1e-3


def test_a_step_skipped_under_the_loss_scaler_closes_the_scalers_step(
    tiny_llama, prompt_completion_file, tmp_path, monkeypatch
):
    """skip_step under fp16: a non-finite loss skips the update after clipping has unscaled the
    gradients; the scaler is told (its update), or the next step's unscaling would raise."""
    from tunelab.training import recipe

    with_loss_scaler(monkeypatch, init_scale=2.0**10)
    real_accumulate, calls = recipe.accumulate, []

    def nan_at_the_second_step(*args, **kwargs):
        loss, work = real_accumulate(*args, **kwargs)
        calls.append(loss)
        return (math.nan if len(calls) == 2 else loss), work

    monkeypatch.setattr(recipe, "accumulate", nan_at_the_second_step)
    config = training_config(
        tiny_llama, prompt_completion_file, tmp_path / "run", **{"train.max_steps": 4, "train.nan_policy": "skip_step"}
    )
    result = train(config, progress=False)
    assert result.summary["skipped_steps"] == 1 and result.summary["steps"] == 4


def test_the_fp16_head_stays_out_of_autocast():
    """The fused head loss computes its gradients outside the loss scaler: fp16 would flush them."""
    from types import SimpleNamespace

    from tunelab.training.steps import head_precision

    fp16 = SimpleNamespace(mixed_precision="fp16", autocast=lambda: pytest.fail("the head ran under fp16 autocast"))
    with head_precision(fp16):
        pass


def test_a_resumed_loss_scaled_run_keeps_the_scale_it_had_found(
    tiny_llama, prompt_completion_file, tmp_path, monkeypatch
):
    """The scaler's state is in the checkpoint: resuming does not overflow down from its initial scale again."""
    import torch

    scales = with_loss_scaler(monkeypatch, init_scale=2.0**127)
    options = {"train.max_steps": 4, "train.save_every": 4}
    first = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **options), progress=False)
    assert first.summary["overflow_skipped_steps"] >= 2
    saved = torch.load(tmp_path / "run" / "checkpoints" / "step-00000004" / "scaler.pt", weights_only=False)
    assert saved["scale"] < 2.0**127
    options.update({"train.max_steps": 8, "train.resume": True})
    resumed = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run", **options), progress=False)
    assert resumed.summary["steps"] == 8 and len(scales) == 2
    # the scale after the first run's last update (halved where that step overflowed), used at once
    assert saved["scale"] in (scales[0][-1], scales[0][-1] / 2) and scales[1][0] == saved["scale"]
