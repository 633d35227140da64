"""The run folder's README.md is a real model card: it names the base, the method and options, the
data files with their rows and hashes, the budget and the final metrics, and its loading snippet,
run as written, gives the trained model's logits."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from conftest import make_labelled_records, make_records, training_config, write_jsonl
from tunelab.models.loading import load_tokenizer
from tunelab.methods.loading import load_model
from tunelab.training.recipe import train

IDS = torch.tensor([[1, 10, 20, 30, 40]])


def card_of(run_dir):
    text = (run_dir / "README.md").read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def python_snippet(body: str) -> str:
    return body.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def lora_run(tiny_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("card")
    data = write_jsonl(folder / "train.jsonl", make_records(24))
    options = {"method.name": "lora", "method.r": 4, "train.max_steps": 3, "train.lr": 1e-2}
    return train(training_config(tiny_llama, data, folder / "run", **options), progress=False), data


def test_the_card_says_what_trained_on_what(lora_run):
    result, data = lora_run
    front, body = card_of(result.run_dir)
    assert front["library_name"] == "peft" and "lora" in front["tags"]
    assert "base_model" not in front  # a local folder is not a hub id: the hub would reject it
    assert "| r | `4` |" in body
    sha256 = hashlib.sha256(data.read_bytes()).hexdigest()
    assert f"| train | `{data}` | 24 | `{sha256}` |" in body
    assert "| optimizer steps | 3 |" in body
    assert f"| train_loss | {result.summary['train_loss']:.4f} |" in body
    assert "Model Card for Model ID" not in body  # PEFT's empty template is gone


def test_the_cards_loading_snippet_gives_the_trained_logits(lora_run):
    result, _ = lora_run
    _, body = card_of(result.run_dir)
    namespace: dict = {}
    exec(python_snippet(body), namespace)
    expected = load_model(str(result.run_dir)).eval()
    with torch.no_grad():
        torch.testing.assert_close(namespace["model"].eval()(IDS).logits, expected(IDS).logits)
    assert (
        namespace["tokenizer"]("robot say fox").input_ids
        == load_tokenizer(str(result.run_dir))("robot say fox").input_ids
    )


def test_a_whole_model_classifier_card_loads_as_a_classifier(tiny_bert, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(24))
    options = {"task": "classification", "method.name": "full", "train.max_steps": 2}
    result = train(training_config(tiny_bert, data, tmp_path / "run", **options), progress=False)
    front, body = card_of(result.run_dir)
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "text-classification"
    namespace: dict = {}
    exec(python_snippet(body), namespace)
    assert namespace["model"].config.id2label == dict(enumerate(result.summary["labels"]))
    assert f"tunelab predict {result.run_dir}" in body
    assert json.loads((result.run_dir / "summary.json").read_text())["task"] == "classification"
