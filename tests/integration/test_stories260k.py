"""On a real pretrained model (stories260K, a Llama trained on TinyStories), LoRA lowers the
held-out loss on children's-story text of a new author (Alice's Adventures in Wonderland).
Needs ../shared/data; skipped where it is absent."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import SHARED_DATA, training_config
from tunelab.data.pipeline import prepare_data
from tunelab.training.evaluation import mean_token_loss
from tunelab.training.recipe import train

pytestmark = pytest.mark.shared_data


def test_lora_lowers_held_out_loss_on_a_childrens_story(stories260k, tmp_path):
    stories = SHARED_DATA / "corpus" / "gutenberg" / "pg11.txt"
    if not stories.is_file():
        pytest.skip(f"needs {stories}")
    options = {
        "data.eval_split": 0.1,
        "train.max_steps": 40,
        "train.lr": 3e-3,
        "method.r": 8,
        "data.max_length": 256,
        "data.packing": True,
        "train.batch_size": 8,
    }
    config = training_config(stories260k, stories, tmp_path / "run", **options)

    tokenizer = AutoTokenizer.from_pretrained(stories260k)
    held_out = prepare_data(config.data, tokenizer, config.train.seed).eval
    base = AutoModelForCausalLM.from_pretrained(stories260k, dtype=torch.float32).eval()
    base_loss = mean_token_loss(base, held_out, tokenizer.eos_token_id, batch_size=4)

    result = train(config, progress=False)
    assert result.summary["eval_loss"] == pytest.approx(
        mean_token_loss(result.model, held_out, tokenizer.eos_token_id, batch_size=4), rel=1e-5
    )
    assert result.summary["eval_loss"] < base_loss - 0.05, (base_loss, result.summary["eval_loss"])
