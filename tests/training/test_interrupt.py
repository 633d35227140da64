"""Ctrl-C during training: the first stops at the next step boundary with a checkpoint and one
line on how to resume (exit 130), the resumed run finishes; a second Ctrl-C exits at once.
The signals go to real ``tunelab train`` processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")


def start_training(model: Path, data: Path, run: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tunelab", "train", f"model={model}", f"data.train={data}", f"output_dir={run}"]
    command += ["train.max_steps=100000", "train.batch_size=2", "train.log_every=1", "--quiet", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(run: Path, steps: int, process: subprocess.Popen, timeout: float = 120) -> None:
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= steps:
            return
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError(f"no {steps} steps logged within {timeout} s")


def test_ctrl_c_stops_at_a_step_with_a_checkpoint_and_the_run_resumes(tiny_llama, prompt_completion_file, tmp_path):
    run = tmp_path / "run"
    process = start_training(tiny_llama, prompt_completion_file, run, "train.save_every=1000")
    wait_for_steps(run, 3, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 130, err[-2000:]
    last_line = err.strip().splitlines()[-1]
    assert "interrupted at step" in last_line and "resume with the same command and train.resume=true" in last_line
    assert "Traceback" not in err
    assert not (run / "summary.json").exists()
    checkpoints = sorted((run / "checkpoints").glob("step-*"))
    assert len(checkpoints) == 1
    stopped_at = json.loads((checkpoints[0] / "state.json").read_text())["step"]
    assert stopped_at >= 3

    resumed = subprocess.run(
        [sys.executable, "-m", "tunelab", "train", f"model={tiny_llama}", f"data.train={prompt_completion_file}"]
        + [f"output_dir={run}", f"train.max_steps={stopped_at + 2}", "train.batch_size=2", "train.log_every=1"]
        + ["train.save_every=1000", "train.resume=true", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "summary.json").read_text())["steps"] == stopped_at + 2


def test_ctrl_c_without_checkpoints_says_to_start_again(tiny_llama, prompt_completion_file, tmp_path):
    run = tmp_path / "run"
    process = start_training(tiny_llama, prompt_completion_file, run)
    wait_for_steps(run, 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "no checkpoint was written (train.save_every is off), so run it again with --overwrite" in err


def test_a_second_ctrl_c_exits_at_once(tiny_llama, prompt_completion_file, tmp_path):
    run = tmp_path / "run"
    process = start_training(tiny_llama, prompt_completion_file, run, "train.save_every=1000")
    wait_for_steps(run, 2, process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert not (run / "summary.json").exists()
