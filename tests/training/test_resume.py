"""A run killed with SIGKILL after a checkpoint resumes mid-epoch to the same final loss."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import training_config
from tunelab.training.checkpoint import list_checkpoints
from tunelab.training.recipe import train

# The child process trains and SIGKILLs itself right after the checkpoint of step 3 is written,
# mid-epoch (6 steps per epoch), with RNG-dependent LoRA dropout on.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import tunelab.training.recipe as recipe
    from conftest import training_config

    real_save = recipe.save_checkpoint

    def save_then_die(folder, model, optimizer, scheduler, state, keep, *rest):
        path = real_save(folder, model, optimizer, scheduler, state, keep, *rest)
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return path

    recipe.save_checkpoint = save_then_die
    config = training_config({model!r}, {data!r}, {out!r}, **{options!r})
    recipe.train(config, progress=False)
    """
)

OPTIONS = {
    "train.max_steps": 8,
    "train.save_every": 1,
    "train.batch_size": 8,
    "method.dropout": 0.1,
    "train.warmup_ratio": 0.25,
}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_llama, prompt_completion_file, tmp_path):
    reference = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "ref", **OPTIONS), progress=False)

    interrupted = tmp_path / "killed"
    script = CHILD.format(
        tests=os.path.dirname(__file__) + "/..",
        model=str(tiny_llama),
        data=str(prompt_completion_file),
        out=str(interrupted),
        options=OPTIONS,
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert [p.name for p in list_checkpoints(interrupted / "checkpoints")] == ["step-00000002", "step-00000003"]
    assert not (interrupted / "summary.json").exists()

    resumed = train(
        training_config(tiny_llama, prompt_completion_file, interrupted, **{**OPTIONS, "train.resume": True}),
        progress=False,
    )
    assert resumed.summary["train_loss"] == pytest.approx(reference.summary["train_loss"], rel=1e-6)
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    reference_curve = (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    resumed_curve = (interrupted / "metrics.jsonl").read_text().splitlines()
    for want, got in zip(reference_curve, resumed_curve, strict=True):
        assert json.loads(got)["loss"] == pytest.approx(json.loads(want)["loss"], rel=1e-6)


def test_checkpoint_holds_only_trainable_weights_and_state(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama, prompt_completion_file, tmp_path / "run", **{"train.save_every": 2, "train.keep_checkpoints": 1}
    )
    result = train(config, progress=False)
    checkpoints = list_checkpoints(result.run_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["step-00000004"]
    files = sorted(p.name for p in checkpoints[0].iterdir())
    assert files == ["optimizer.pt", "rng.pt", "scheduler.pt", "state.json", "trainable.safetensors"]
    from safetensors.torch import load_file

    saved = load_file(checkpoints[0] / "trainable.safetensors")
    assert sum(t.numel() for t in saved.values()) == result.summary["trainable_params"]
    state = json.loads((checkpoints[0] / "state.json").read_text())
    assert state["step"] == 4
    assert not [p for p in (result.run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp")]
