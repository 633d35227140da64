"""The ``features`` method: a frozen model embeds every text once (cached on disk), a logistic or MLP
head trains on the vectors; and the pooling that turns token states into one vector."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

from conftest import make_labelled_records, make_records, training_config, write_jsonl
from tunelab.features import embedding
from tunelab.features.embedding import embed_token_ids, pool
from tunelab.methods.loading import load_model
from tunelab.training.recipe import train

KINDS = {"negative": "complaint", "positive": "praise", "neutral": "feedback"}


@pytest.fixture(scope="module")
def heads(tiny_llama, labelled_data, tmp_path_factory):
    """A logistic and an MLP head trained on the tiny Llama's embeddings (100 cheap steps on vectors)."""
    runs = {}

    def run(head: str):
        if head not in runs:
            train_file, eval_file = labelled_data
            options = {
                "task": "classification",
                "data.eval": eval_file,
                "method.name": "features",
                "method.head": head,
                "method.hidden_size": 32,
                "train.max_steps": 100,
                "train.batch_size": 16,
                "train.lr": 3e-2,
                "train.log_every": 20,
            }
            output = tmp_path_factory.mktemp(f"features-{head}")
            runs[head] = train(training_config(tiny_llama, train_file, output, **options), progress=False)
        return runs[head]

    return run


@pytest.mark.parametrize("head", ["logistic", "mlp"])
def test_a_head_on_frozen_embeddings_learns_the_labels(heads, head):
    result = heads(head)
    losses = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0], losses
    assert result.summary["accuracy"] > 0.6  # three balanced labels: chance is 1/3
    assert result.summary["method"] == "features"


@pytest.mark.parametrize(
    ("head", "shapes"),
    [
        ("logistic", {"weight": (3, 64), "bias": (3,)}),
        # Linear(64, hidden_size=32) -> GELU -> Dropout -> Linear(32, 3)
        ("mlp", {"0.weight": (32, 64), "0.bias": (32,), "3.weight": (3, 32), "3.bias": (3,)}),
    ],
)
def test_only_the_head_trains_and_is_saved(heads, head, shapes):
    result = heads(head)
    model = result.model

    assert not any(parameter.requires_grad for parameter in model.encoder.parameters())
    head_params = sum(parameter.numel() for parameter in model.head.parameters())
    assert result.summary["trainable_params"] == head_params == sum(torch.Size(s).numel() for s in shapes.values())
    saved = load_file(result.run_dir / "feature_head.safetensors")
    assert {key: tuple(value.shape) for key, value in saved.items()} == shapes  # the head, no encoder weight
    described = json.loads((result.run_dir / "feature_head.json").read_text())
    assert described["head"] == head and described["labels"] == ["negative", "neutral", "positive"]
    assert described["input_size"] == 64


@pytest.mark.parametrize("head", ["logistic", "mlp"])
def test_the_reloaded_classifier_gives_the_trained_logits(heads, head):
    result = heads(head)
    reloaded = load_model(str(result.run_dir))
    assert type(reloaded).__name__ == "FeatureClassifier"
    ids = torch.tensor([[1, 10, 20, 30, 40], [1, 50, 60, 70, 80]])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, result.model.eval()(**inputs).logits, atol=1e-5, rtol=0)


@pytest.fixture()
def own_cache(tmp_path, monkeypatch):
    """An empty embedding cache for this test alone: other tests may have embedded the same texts."""
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embeddings"


@pytest.fixture()
def surveys(tmp_path):
    """The same texts labelled twice: sentiment in ``label``, what kind of message in ``kind``."""
    rows = [
        {**row, "kind": KINDS[row["label"]] if index % 4 else "feedback"}
        for index, row in enumerate(make_labelled_records(24))
    ]
    return write_jsonl(tmp_path / "surveys.jsonl", rows)


def features_run(model, data, output, **options):
    config = training_config(
        model, data, output, **{"task": "classification", "method.name": "features", "train.max_steps": 3, **options}
    )
    return train(config, progress=False)


def counting_embedder(monkeypatch) -> list[int]:
    """Wrap the encoder pass; returns the list of how many texts each call embedded."""
    calls: list[int] = []
    original = embedding.embed_token_ids

    def counted(encoder, sequences, *args, **kwargs):
        calls.append(len(sequences))
        return original(encoder, sequences, *args, **kwargs)

    monkeypatch.setattr(embedding, "embed_token_ids", counted)
    return calls


def test_a_second_task_on_the_same_texts_uses_the_cache_not_the_encoder(
    tiny_llama, surveys, own_cache, tmp_path, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger="tunelab")
    calls = counting_embedder(monkeypatch)
    sentiment = features_run(tiny_llama, surveys, tmp_path / "sentiment")
    assert calls == [24]
    assert "features: embedded 24 train texts" in caplog.messages
    assert list(own_cache.glob("*.safetensors"))

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although the embeddings were cached")

    monkeypatch.setattr(embedding, "embed_token_ids", no_encoder)
    caplog.clear()
    kind = features_run(tiny_llama, surveys, tmp_path / "kind", **{"data.columns.label": "kind"})

    assert "features: used the embedding cache for 24 train texts" in caplog.messages
    assert kind.summary["labels"] == ["complaint", "feedback", "praise"]
    assert sentiment.summary["labels"] == ["negative", "neutral", "positive"]


def test_cache_false_recomputes_the_same_vectors(tiny_llama, surveys, own_cache, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="tunelab")
    cached = features_run(tiny_llama, surveys, tmp_path / "first")  # fills the cache
    calls = counting_embedder(monkeypatch)
    caplog.clear()

    recomputed = features_run(tiny_llama, surveys, tmp_path / "again", **{"method.cache": False})

    assert calls == [24]
    assert "features: embedded 24 train texts" in caplog.messages
    # the same vectors, the same seed: the same training, whether the vectors came from disk or not
    assert recomputed.summary["train_loss"] == pytest.approx(cached.summary["train_loss"], abs=1e-6)


def test_another_pooling_or_layer_is_not_taken_from_the_cache(tiny_llama, surveys, own_cache, tmp_path, monkeypatch):
    features_run(tiny_llama, surveys, tmp_path / "mean")
    calls = counting_embedder(monkeypatch)

    features_run(tiny_llama, surveys, tmp_path / "last", **{"method.pooling": "last_token"})
    features_run(tiny_llama, surveys, tmp_path / "layer", **{"method.layer": 1})

    assert calls == [24, 24]


def test_a_run_folder_is_not_mistaken_for_its_base_in_the_cache(
    tiny_llama, surveys, own_cache, tmp_path, caplog, monkeypatch
):
    lm_data = write_jsonl(tmp_path / "lm.jsonl", make_records(48))
    adapted = train(
        training_config(tiny_llama, lm_data, tmp_path / "lora", **{"train.lr": 1e-2, "train.max_steps": 5}),
        progress=False,
    )
    features_run(tiny_llama, surveys, tmp_path / "on-base")  # caches the base model's embeddings
    caplog.set_level(logging.INFO, logger="tunelab")
    caplog.clear()

    features_run(adapted.run_dir, surveys, tmp_path / "on-run")

    assert "features: embedded 24 train texts" in caplog.messages


@pytest.fixture(scope="module")
def bert_encoder(tiny_bert):
    return AutoModel.from_pretrained(tiny_bert).eval()


SEQUENCES = [[2, 10, 20, 30, 40, 50, 3], [2, 15, 25, 3], [2, 60, 70, 80, 90, 3]]


def test_poolings_give_different_vectors(bert_encoder):
    vectors = {
        pooling: embed_token_ids(bert_encoder, SEQUENCES, pad_id=0, pooling=pooling)
        for pooling in ("mean", "cls", "last_token")
    }
    for pooling, tensor in vectors.items():
        assert tensor.shape == (3, 64) and tensor.dtype == torch.float32, pooling
    assert not torch.allclose(vectors["mean"], vectors["cls"])
    assert not torch.allclose(vectors["mean"], vectors["last_token"])
    assert not torch.allclose(vectors["cls"], vectors["last_token"])
    assert not torch.allclose(vectors["mean"], embed_token_ids(bert_encoder, SEQUENCES, pad_id=0, layer=0))


def test_a_text_gets_the_same_vector_alone_or_padded_in_a_batch(bert_encoder):
    for pooling in ("mean", "cls", "last_token"):
        batched = embed_token_ids(bert_encoder, SEQUENCES, pad_id=0, pooling=pooling)
        alone = torch.cat([embed_token_ids(bert_encoder, [ids], pad_id=0, pooling=pooling) for ids in SEQUENCES])
        torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5, msg=pooling)


def test_pool_ignores_padding_on_either_side():
    hidden = torch.tensor(
        [
            [[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 9.0]],  # left padded: one pad, three real tokens
            [[2.0, 0.0], [4.0, 6.0], [9.0, 9.0], [9.0, 9.0]],  # right padded: two real tokens, two pads
        ]
    )
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])

    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[3.0, 5.0], [3.0, 3.0]]))
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [2.0, 0.0]]))
    torch.testing.assert_close(pool(hidden, mask, "last_token"), torch.tensor([[5.0, 9.0], [4.0, 6.0]]))
