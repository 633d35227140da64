"""The training recipe end to end on tiny models: the loss goes down, runs are reproducible,
the run folder holds what users read, and precision / checkpointing options work."""

from __future__ import annotations

import json

import pytest

from conftest import make_records, training_config, write_jsonl
from tunelab.config.precision import resolve_precision
from tunelab.training.recipe import train


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_full_fine_tuning_lowers_the_loss(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama,
        prompt_completion_file,
        tmp_path / "run",
        **{"method.name": "full", "train.max_steps": 30, "train.lr": 3e-3, "train.log_every": 5},
    )
    result = train(config, progress=False)
    losses = _losses(result.run_dir)
    assert losses[-1] < 0.7 * losses[0]


def test_same_seed_same_loss_curve(tiny_llama, prompt_completion_file, tmp_path):
    curves = []
    for name in ("a", "b"):
        config = training_config(tiny_llama, prompt_completion_file, tmp_path / name, **{"method.dropout": 0.1})
        curves.append(_losses(train(config, progress=False).run_dir))
    assert curves[0] == curves[1]
    other = training_config(tiny_llama, prompt_completion_file, tmp_path / "c", **{"train.seed": 1})
    assert _losses(train(other, progress=False).run_dir) != curves[0]


def test_run_folder_holds_config_metrics_summary_and_artifact(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama,
        prompt_completion_file,
        tmp_path / "run",
        **{"data.eval_split": 0.25, "train.eval_every": 2, "train.precision": "auto"},
    )
    run_dir = train(config, progress=False).run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        assert {"step", "epoch", "loss", "lr", "tokens_seen", "tokens_per_s"} <= set(record)
    assert [("eval_loss" in r) for r in records] == [False, True, False, True]
    assert records[-1]["tokens_seen"] > records[0]["tokens_seen"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = {
        "method",
        "model",
        "trainable_params",
        "total_params",
        "trainable_pct",
        "train_time_s",
        "tokens_per_s",
        "peak_memory_bytes",
        "train_loss",
        "eval_loss",
    }
    assert expected <= set(summary)
    assert summary["trainable_pct"] == pytest.approx(100 * summary["trainable_params"] / summary["total_params"])
    assert summary["eval_loss"] == records[-1]["eval_loss"]
    assert (run_dir / "config.yaml").is_file()
    # the default precision, auto, is recorded as what it meant here (fp32 on a CPU)
    meant = resolve_precision("auto")
    assert config.train.precision == "auto" and meant in ("fp32", "bf16")
    assert summary["precision"] == meant and f"precision: {meant}" in (run_dir / "config.yaml").read_text()
    assert (run_dir / "adapter_model.safetensors").is_file()  # lora: the adapter alone
    assert not (run_dir / "model.safetensors").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"train.precision": "bf16"},
        {"train.gradient_checkpointing": True},
        {"data.packing": True, "data.max_length": 64},
    ],
)
def test_training_options_run_and_learn(tiny_llama, prompt_completion_file, tmp_path, options):
    config = training_config(
        tiny_llama,
        prompt_completion_file,
        tmp_path / "run",
        **{"method.name": "full", "train.max_steps": 12, "train.lr": 3e-3, **options},
    )
    losses = _losses(train(config, progress=False).run_dir)
    assert losses[-1] < losses[0]


def test_epochs_set_the_step_count(tiny_llama, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", make_records(10))
    config = training_config(
        tiny_llama, data, tmp_path / "run", **{"train.max_steps": "null", "train.epochs": 2, "train.batch_size": 4}
    )
    summary = train(config, progress=False).summary
    assert summary["steps"] == 6  # ceil(10 / 4) = 3 steps per epoch
    assert summary["epochs"] == 2


def test_a_token_budget_stops_training_at_the_budget(tiny_llama, prompt_completion_file, tmp_path):
    config = training_config(
        tiny_llama, prompt_completion_file, tmp_path / "run", **{"train.max_tokens": 150, "train.max_steps": 100}
    )
    summary = train(config, progress=False).summary

    # the budget wins over max_steps: a few steps of ~4 x 12 tokens, stopping at the first step past 150
    assert 150 <= summary["tokens_seen"] < 150 + 4 * 40
    assert summary["steps"] < 10
