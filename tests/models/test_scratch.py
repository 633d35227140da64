"""A model built from scratch pretrains on contiguous text blocks, and the loss falls."""

from __future__ import annotations

import json

import pytest

from conftest import CORPUS, training_config
from tunelab.data.blocks import cut_into_blocks
from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample
from tunelab.errors import UserError
from tunelab.tokenization.training import train_tokenizer
from tunelab.training.recipe import train


def test_blocks_are_contiguous_and_full():
    documents = [TokenizedExample([1, 2, 3, 4, 5], []), TokenizedExample([6, 7, 8, 9], [])]
    blocks = cut_into_blocks(documents, 4)
    assert [b.input_ids for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8]]  # the partial tail is dropped
    assert all(b.labels[0] == IGNORE_INDEX and b.labels[1:] == b.input_ids[1:] for b in blocks)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_a_scratch_model_pretrains_with_the_loss_falling(tmp_path, architecture):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 5), encoding="utf-8")
    tokenizer = train_tokenizer([corpus], tmp_path / "tok", kind="char").output
    options = {
        "model.init": "scratch",
        "model.tokenizer": str(tokenizer),
        "model.architecture": architecture,
        "model.hidden_size": 32,
        "model.layers": 2,
        "model.heads": 2,
        "model.max_position": 32,
        "method.name": "full",
        "data.format": "text",
        "data.blocks": True,
        "data.max_length": 32,
        "train.max_steps": 30,
        "train.lr": 5e-3,
        "train.log_every": 5,
        "train.batch_size": 8,
    }
    result = train(training_config("unused", corpus, tmp_path / "run", **options), progress=False)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.9 * losses[0]
    assert result.summary["model"]["init"] == "scratch"
    assert (result.run_dir / "model.safetensors").is_file()


def test_a_scratch_model_cannot_take_an_adapter(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS), encoding="utf-8")
    tokenizer = train_tokenizer([corpus], tmp_path / "tok", kind="char").output
    options = {
        "model.init": "scratch",
        "model.tokenizer": str(tokenizer),
        "model.max_position": 32,
        "method.name": "lora",
        "data.format": "text",
        "data.blocks": True,
        "data.max_length": 32,
    }
    with pytest.raises(UserError, match="scratch model trains whole"):
        train(training_config("unused", corpus, tmp_path / "run", **options), progress=False)
