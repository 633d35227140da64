"""Data-parallel training in two CPU processes (``tunelab train --processes 2``: torchrun, gloo).

The same global batch (per-process batch x processes x grad_accum) gives the same loss curve as
one process, for full fine-tuning and LoRA, with and without packing; two processes resume a
checkpoint they wrote to the same final loss; only the main process writes; the saved adapter is
complete, and an empty one is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from conftest import make_records, training_config, write_jsonl
from tunelab.errors import UserError
from tunelab.methods.peft_adapter import check_adapter_file
from tunelab.training.launch import launch_command
from tunelab.training.recipe import train

STEPS = 6


def settings(method: str, packing: bool) -> dict[str, object]:
    options = {"method.name": method, "train.max_steps": STEPS, "train.lr": 1e-2, "train.scheduler": "constant"}
    options.update({"train.batch_size": 4, "train.log_every": 1, "data.packing": packing, "data.max_length": 64})
    return {**options, **({"method.r": 4} if method == "lora" else {})}


def train_in_processes(processes: int, model, data, output, options: dict[str, object]) -> subprocess.CompletedProcess:
    arguments = [f"model={model}", f"data.train={data}", f"output_dir={output}", "--quiet"]
    arguments += [f"{key}={value}" for key, value in options.items()]
    command = [sys.executable, "-m", "tunelab", "train", *arguments, "--processes", str(processes)]
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    finished = subprocess.run(command, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    return write_jsonl(folder / "train.jsonl", make_records(64)), write_jsonl(
        folder / "eval.jsonl", make_records(12, 5)
    )


@pytest.mark.parametrize(("method", "packing"), [("full", False), ("full", True), ("lora", False), ("lora", True)])
def test_two_processes_follow_the_one_process_loss_curve(tiny_llama, data, tmp_path, method, packing):
    train_file, eval_file = data
    options = {**settings(method, packing), "data.eval": eval_file}
    # one process takes the two micro-batches the two processes take side by side
    one_config = training_config(tiny_llama, train_file, tmp_path / "one", **options, **{"train.grad_accum": 2})
    alone = train(one_config, progress=False)
    finished = train_in_processes(2, tiny_llama, train_file, tmp_path / "two", options)

    one, two = metrics(alone.run_dir), metrics(tmp_path / "two")
    assert [line["step"] for line in two] == list(range(1, STEPS + 1))  # one writer: each step logged once
    torch.testing.assert_close(
        torch.tensor([line["loss"] for line in two]), torch.tensor([line["loss"] for line in one]), atol=2e-5, rtol=2e-5
    )
    assert [line["tokens_seen"] for line in two] == [line["tokens_seen"] for line in one]  # summed over processes
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and alone.summary["processes"] == 1
    assert summary["eval_loss"] == pytest.approx(alone.summary["eval_loss"], rel=1e-4)  # over both halves
    assert finished.stdout.count("run folder:") == 1


def test_two_processes_resume_their_checkpoint_to_the_same_final_loss(tiny_llama, data, tmp_path):
    train_file, _ = data
    options = {**settings("lora", False), "train.save_every": 3}
    train_in_processes(2, tiny_llama, train_file, tmp_path / "straight", options)
    # stopped after step 3 (the budget may grow on resume), then resumed by two processes again
    train_in_processes(2, tiny_llama, train_file, tmp_path / "resumed", {**options, "train.max_steps": 3})
    train_in_processes(2, tiny_llama, train_file, tmp_path / "resumed", {**options, "train.resume": "true"})

    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "resumed")
    assert [line["step"] for line in resumed] == list(range(1, STEPS + 1))
    assert resumed[-1]["loss"] == pytest.approx(straight[-1]["loss"], rel=1e-5)


def test_an_adapter_saved_without_its_weights_is_refused(tmp_path):
    save_file({"base_model.model.layers.0.lora_A.weight": torch.zeros(0, 8)}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(UserError, match=r"method lora: the adapter to save has no elements in any of its 1 tensors"):
        check_adapter_file(tmp_path / "adapter_model.safetensors", "lora")
    # AdaLoRA prunes some ranks to nothing: an adapter with some empty tensors is a real one
    save_file({"lora_A": torch.ones(4, 8), "lora_E": torch.zeros(0, 1)}, tmp_path / "pruned.safetensors")
    check_adapter_file(tmp_path / "pruned.safetensors", "adalora")


def test_the_launchers_are_torchrun_and_accelerates_own(tmp_path):
    assert launch_command(["x.yaml"], 2)[2:6] == ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    config = tmp_path / "fsdp.yaml"
    config.write_text("distributed_type: FSDP\n")
    command = launch_command(["x.yaml", "--quiet"], 4, config)
    assert command[2:8] == ["accelerate.commands.launch", "--config_file", str(config), "--num_processes", "4", "-m"]
    assert command[-4:] == ["tunelab", "train", "x.yaml", "--quiet"]
    with pytest.raises(UserError, match="--accelerate-config: file not found"):
        launch_command([], 2, tmp_path / "absent.yaml")
