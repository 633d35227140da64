"""``torchrun --nproc_per_node 2 tunelab train`` on CPU trains one model data-parallel, written once;
where accelerate is told not to (ACCELERATE_USE_CPU=false), it refuses instead of letting each
process train its own copy into the same folder, as it once silently did."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import make_records, write_jsonl


def torchrun(model, train_file, output, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tunelab", "train", f"model={model}", f"data.train={train_file}", "method.name=lora",
        "train.max_steps=3", "train.batch_size=4", f"output_dir={output}", "--quiet",
    ]  # fmt: skip
    inherited = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env = {**inherited, "OMP_NUM_THREADS": "1", **env_extra}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_two_cpu_processes_train_one_model_data_parallel(tiny_llama, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", make_records(32))
    finished = torchrun(tiny_llama, train_file, tmp_path / "run", {})
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2
    assert finished.stdout.count("run folder:") == 1  # the main process reports; the other stays quiet


def test_a_launch_accelerate_would_not_share_is_refused(tiny_llama, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", make_records(32))
    finished = torchrun(tiny_llama, train_file, tmp_path / "run", {"ACCELERATE_USE_CPU": "false"})
    assert finished.returncode != 0
    assert "error: launched as 2 processes, but accelerate runs 1" in finished.stderr
    assert "Traceback" not in finished.stderr.split("error: launched")[0]
    assert not (tmp_path / "run" / "summary.json").exists()
