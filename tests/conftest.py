"""Shared fixtures: tiny random Llama and GPT-2 models (saved once per session) and data files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the feature-based method's embedding cache: one per test session, never the user's own
os.environ.setdefault("TUNELAB_CACHE_DIR", tempfile.mkdtemp(prefix="tunelab-test-cache-"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

CORPUS = [
    "Once upon a time there was a little robot who loved to count the stars.",
    "Convert this instruction to JSON: finish the report by Friday with high priority.",
    '{"name": "ProjectA", "deadline": "2024-12-31", "priority": "high"}',
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "User asks a question and the assistant answers it politely and briefly.",
    "What is the capital of France? The capital of France is Paris.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 and letters a b c d e f g.",
] * 4


def make_records(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Prompt/completion pairs with a learnable rule (the completion repeats a key word)."""
    import random

    rng = random.Random(seed)
    words = ["robot", "star", "fox", "dog", "cat", "paris", "report", "friday", "project", "deadline"]
    records = []
    for _ in range(count):
        word = rng.choice(words)
        filler = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        records.append({"prompt": f"{filler} say {word}:", "completion": f" {word} {word}"})
    return records


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from tunelab.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), "llama", CORPUS, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    from tunelab.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2", CORPUS, vocab_size=400)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from tunelab.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert", CORPUS, vocab_size=400)


SENTIMENT_WORDS = {
    "positive": ["great", "love", "excellent", "happy", "wonderful"],
    "negative": ["awful", "hate", "broken", "angry", "terrible"],
    "neutral": ["tuesday", "package", "table", "report", "window"],
}


def make_labelled_records(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Texts whose label is given away by one of its words, among filler: learnable in a few steps."""
    import random

    rng = random.Random(seed)
    filler = ["the", "a", "it", "was", "and", "we", "my", "this"]
    labels = sorted(SENTIMENT_WORDS)
    records = []
    for index in range(count):
        label = labels[index % len(labels)]
        words = [rng.choice(filler) for _ in range(rng.randint(2, 6))]
        words.insert(rng.randint(0, len(words)), rng.choice(SENTIMENT_WORDS[label]))
        records.append({"text": " ".join(words), "label": label})
    return records


@pytest.fixture(scope="session")
def labelled_data(tmp_path_factory) -> tuple[Path, Path]:
    """Training (96 rows) and evaluation (30 rows) files of text and a sentiment label."""
    folder = tmp_path_factory.mktemp("labelled")
    return (
        write_jsonl(folder / "train.jsonl", make_labelled_records(96)),
        write_jsonl(folder / "eval.jsonl", make_labelled_records(30, seed=1)),
    )


@pytest.fixture()
def prompt_completion_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", make_records(48))


@pytest.fixture(scope="session")
def stories260k() -> Path:
    folder = SHARED_DATA / "models" / "stories260K-hf"
    if not folder.is_dir():
        pytest.skip(f"needs ../shared/data/models/stories260K-hf, absent at {folder}")
    return folder


def training_config(model: Path, train_file: Path, output_dir: Path, **overrides):
    """A validated config for a short run on a tiny model; ``overrides`` use dotted keys."""
    from tunelab.methods.config_loading import load_config

    base = {
        "model": str(model),
        "data.train": str(train_file),
        "output_dir": str(output_dir),
        "train.batch_size": 4,
        "train.max_steps": 4,
        "train.lr": 1e-3,
        "train.log_every": 1,
        "train.precision": "fp32",  # the tolerances below are fp32's, on a GPU machine too (auto: bf16 there)
    }
    base.update(overrides)
    return load_config(None, [f"{key}={value}" for key, value in base.items()])


def write_comparison(
    path: Path,
    output_dir: Path,
    model: Path,
    train_file: Path,
    entries: list,
    steps: int = 1,
    eval_file: Path | None = None,
) -> Path:
    """A comparison file over ``model`` and ``train_file`` (and ``eval_file``) at a budget of ``steps``."""
    base = {"model": str(model), "data": {"train": str(train_file)}, "train": {"precision": "fp32"}}
    if eval_file is not None:
        base["data"]["eval"] = str(eval_file)
    spec = {"output_dir": str(output_dir), "base": base, "budget": {"steps": steps}, "entries": entries}
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def saved_bytes(run) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of ``run()``."""
    import torch

    storages: dict[int, int] = {}

    def keep(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        run()
    return sum(storages.values())


def cpu_matmul_rates(monkeypatch, fp32: float, bf16: float) -> None:
    """The CPU's matmul rates (FLOP/s) as if measured, for every caller of ``matmul_rates``: a CPU
    with or without bf16 instructions, whatever this machine is (at any thread count a run sets)."""
    import torch

    from tunelab import matmul_rates

    rates = {}
    for threads in range(1, (os.cpu_count() or 1) + 1):
        rates[("cpu", None, torch.float32, threads)] = fp32
        rates[("cpu", None, torch.bfloat16, threads)] = bf16
    monkeypatch.setattr(matmul_rates, "_measured", rates)
