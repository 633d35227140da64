"""The speed levers and the figures a run reports on its own speed (issue 13).

Each lever must change how fast, never what: the chunked head loss, the thread count and
torch.compile give the loss curve of the plain path. The reported figures must be the ones a user
would compute: padding share from the batches, FLOPs from the parameter counts, threads restored.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import training_config
from tunelab.data.collate import collate_tokens
from tunelab.data.packing import pack_examples
from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample
from tunelab.training.flops import model_shape
from tunelab.training.recipe import train as train_run
from tunelab.training.threads import run_threads


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _config(tiny_llama, data_file, folder, **overrides):
    options = {"method.name": "full", "train.max_steps": 4, "train.log_every": 1, "train.lr": 1e-3, **overrides}
    return training_config(tiny_llama, data_file, folder, **options)


def train(config):
    return train_run(config, progress=False)


def test_chunked_loss_off_gives_the_same_loss_curve(tiny_llama, prompt_completion_file, tmp_path):
    chunked = _losses(train(_config(tiny_llama, prompt_completion_file, tmp_path / "a")).run_dir)
    plain = _losses(
        train(_config(tiny_llama, prompt_completion_file, tmp_path / "b", **{"train.chunked_loss": False})).run_dir
    )
    assert plain == pytest.approx(chunked, abs=1e-5)


def test_threads_apply_for_the_run_and_are_restored(tiny_llama, prompt_completion_file, tmp_path):
    before = torch.get_num_threads()
    result = train(_config(tiny_llama, prompt_completion_file, tmp_path / "run", **{"train.threads": 1}))
    assert _summary(result.run_dir)["threads"] == 1
    assert torch.get_num_threads() == before


def test_default_threads_follow_the_launch(monkeypatch):
    monkeypatch.setattr("tunelab.training.threads.physical_cores", lambda: 16)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert run_threads(None) == 16
    assert run_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert run_threads(None) == 4  # the user's own setting for one process
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun sets for each of its processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert run_threads(None) == 8


def test_summary_reports_padding_share_target_tokens_and_mfu(tiny_llama, prompt_completion_file, tmp_path):
    options = {"data.max_length": 64, "train.max_steps": 3}
    padded = _summary(train(_config(tiny_llama, prompt_completion_file, tmp_path / "a", **options)).run_dir)
    packed_options = {**options, "data.packing": True}
    packed = _summary(train(_config(tiny_llama, prompt_completion_file, tmp_path / "b", **packed_options)).run_dir)
    for summary in (padded, packed):
        assert 0 < summary["mfu"] < 1
        assert 0 < summary["target_tokens_per_s"] < summary["steady_tokens_per_s"]
        assert summary["matmul_peak_gflops"] > 0 and summary["first_step_s"] > 0
    assert packed["padding_share"] < padded["padding_share"]
    assert padded["padding_share"] > 0.05  # the fixture's rows differ in length


def test_padding_share_counts_the_padded_positions():
    items = [TokenizedExample([5, 6, 7, 8], [IGNORE_INDEX, 6, 7, 8]), TokenizedExample([9], [IGNORE_INDEX])]
    batch = collate_tokens(items, pad_id=0)
    assert (batch.real_tokens, batch.positions) == (5, 8)
    assert batch.attention_pairs == 4 * 5 // 2 + 1
    packed = collate_tokens(pack_examples(items, max_length=8), pad_id=0)
    assert (packed.real_tokens, packed.positions, packed.attention_pairs) == (5, 5, 11)


def test_flops_count_weight_gradients_only_for_what_trains(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    shape = model_shape(model)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = model.get_output_embeddings().weight.numel()
    assert (shape.body, shape.head) == (linear - head, head)
    assert shape.body_trainable == shape.body and shape.head_trainable
    config = model.config
    assert shape.layers == config.num_hidden_layers
    # full training: 6 FLOPs per weight and token, the head on its rows, attention on its pairs
    flops = shape.step_flops(tokens=10, head_rows=4, attention_pairs=30)
    attention = 3 * 4 * config.num_hidden_layers * shape.attention_width * 30
    assert flops == 6 * shape.body * 10 + 6 * head * 4 + attention
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    frozen = model_shape(model)
    assert frozen.step_flops(10, 4, 30) == 4 * shape.body * 10 + 4 * head * 4 + attention


def test_compiled_model_trains_the_same_curve_and_saves_plain_weights(tiny_llama, prompt_completion_file, tmp_path):
    options = {"train.max_steps": 2}
    plain = train(_config(tiny_llama, prompt_completion_file, tmp_path / "a", **options))
    compiled = train(_config(tiny_llama, prompt_completion_file, tmp_path / "b", **options, **{"train.compile": True}))
    assert _losses(compiled.run_dir) == pytest.approx(_losses(plain.run_dir), abs=1e-4)
    reloaded = AutoModelForCausalLM.from_pretrained(compiled.run_dir)  # no compiler prefixes in the names
    trained = compiled.model.state_dict()
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], atol=0, rtol=0)


def test_measuring_the_matmul_peak_leaves_the_seeded_random_stream_alone():
    """The peak is measured once per process: drawing from the global generator would give the first
    run of a process other dropout masks than the next (a Ray worker's run differed from a sequential one)."""
    from tunelab import matmul_rates
    from tunelab.training import flops

    matmul_rates._measured.clear()
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    flops.matmul_peak_flops(torch.device("cpu"), "fp32")
    assert torch.equal(torch.rand(4), expected)
