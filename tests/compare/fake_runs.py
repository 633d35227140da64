"""Finished run folders written by hand (no training), for the results and report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tunelab.compare.results import FAILED, FINISHED, entry_record

WEIGHTS_BYTES, TOKENIZER_BYTES = 1000, 300


def make_run(
    folder: Path,
    method: str = "lora",
    trainable: int = 100,
    total: int = 10_000,
    losses: tuple[float, ...] = (3.0, 2.5, 2.0),
    extra_summary: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """A run folder as ``train`` leaves it: config, metrics, summary, artifact, a checkpoint."""
    folder.mkdir(parents=True)
    config = {"model": "/models/tiny", "method": {"name": method, "r": 4}, "output_dir": str(folder)}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    lines = [{"step": step, "loss": loss, "tokens_seen": 10 * step} for step, loss in enumerate(losses, start=1)]
    lines[-1]["eval_loss"] = losses[-1] + 0.1
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    summary = {
        "method": method,
        "task": "causal_lm",
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100 * trainable / total,
        "train_time_s": 1.5,
        "tokens_per_s": 20.0,
        "peak_memory_bytes": 300 * 2**20,
        "train_loss": losses[-1],
        "eval_loss": losses[-1] + 0.1,
        "steps": len(losses),
        "tokens_seen": 10 * len(losses),
        "device": "cpu",
        **(extra_summary or {}),
    }
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if evaluation is not None:
        (folder / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(b"w" * WEIGHTS_BYTES)
    (folder / "tokenizer.json").write_bytes(b"t" * TOKENIZER_BYTES)
    (folder / "checkpoints" / "step-3").mkdir(parents=True)
    (folder / "checkpoints" / "step-3" / "optimizer.pt").write_bytes(b"c" * 5000)
    return folder


def finished_record(folder: Path, name: str, **run: Any) -> dict[str, Any]:
    return entry_record(name, make_run(folder / name, **run), FINISHED, action="trained")


def failed_record(folder: Path, name: str, error: str) -> dict[str, Any]:
    method = {"name": "last_layers", "layers": 99}
    return entry_record(name, folder / name, FAILED, error, method=method, action=FAILED)
