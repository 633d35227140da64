"""``tunelab predict`` and ``predict_labels``: label texts with a finished classification run."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import make_labelled_records, make_records, training_config, write_jsonl
from tunelab.cli.main import main
from tunelab.inference.predict import predict_labels
from tunelab.methods.loading import load_model
from tunelab.models.loading import load_tokenizer
from tunelab.training.recipe import train

LABELS = ["negative", "neutral", "positive"]
TEXTS = ["we love it and it was great", "it was awful and we hate this", "my window"]


@pytest.fixture(scope="module")
def classifier_run(tiny_llama, tmp_path_factory):
    """Full fine-tuning of the tiny Llama long enough to learn the give-away word."""
    folder = tmp_path_factory.mktemp("predict")
    options = {
        "task": "classification",
        "method.name": "full",
        "train.max_steps": 20,
        "train.batch_size": 8,
        "train.lr": 3e-3,
        "train.scheduler": "constant",
    }
    data = write_jsonl(folder / "train.jsonl", make_labelled_records(96))
    return train(training_config(tiny_llama, data, folder / "run", **options), progress=False).run_dir


@pytest.fixture(scope="module")
def features_run(tiny_bert, tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict-features")
    options = {"task": "classification", "method.name": "features", "train.max_steps": 3}
    data = write_jsonl(folder / "train.jsonl", make_labelled_records(24))
    return train(training_config(tiny_bert, data, folder / "run", **options), progress=False).run_dir


def parse_table_line(line: str) -> tuple[str, dict[str, float], str]:
    """``label<TAB>name p  name p ...<TAB>text`` -> (label, probabilities, text)."""
    label, shown, text = line.split("\t")
    parts = shown.split()
    return label, {parts[i]: float(parts[i + 1]) for i in range(0, len(parts), 2)}, text


def test_predict_prints_every_label_with_probabilities_for_each_text(classifier_run, capsys):
    assert main(["predict", str(classifier_run), "--text", TEXTS[0], "--text", TEXTS[1]]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, TEXTS[:2], strict=True):
        label, probabilities, shown_text = parse_table_line(line)
        assert shown_text == text
        assert sorted(probabilities) == LABELS
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=2e-3)  # printed with 3 decimals
        assert label == max(probabilities, key=probabilities.get)
    assert [parse_table_line(line)[0] for line in lines] == ["positive", "negative"]  # it learned the words


def test_predicted_labels_are_the_argmax_of_the_loaded_models_logits(classifier_run):
    predictions = predict_labels(classifier_run, TEXTS)
    model = load_model(str(classifier_run)).eval()
    tokenizer = load_tokenizer(str(classifier_run))

    assert [prediction.text for prediction in predictions] == TEXTS
    assert [prediction.label for prediction in predictions] == ["positive", "negative", "neutral"]
    for prediction in predictions:
        ids = torch.tensor([tokenizer(prediction.text)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        assert prediction.label == LABELS[int(logits.argmax())]
        expected = dict(zip(LABELS, torch.softmax(logits, dim=-1).tolist(), strict=True))
        assert prediction.probabilities == pytest.approx(expected, abs=1e-5)
        assert list(prediction.probabilities) == sorted(expected, key=expected.get, reverse=True)  # most likely first


def test_predict_with_a_feature_based_run(features_run):
    predictions = predict_labels(features_run, TEXTS)
    model = load_model(str(features_run)).eval()
    tokenizer = load_tokenizer(str(features_run))

    for prediction in predictions:
        ids = torch.tensor([tokenizer(prediction.text)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        assert prediction.label == LABELS[int(logits.argmax())]
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "architecture",
    [
        "tiny_llama",
        "tiny_bert",
        "tiny_gpt2",  # absolute positions: left padding must not shift them
    ],
)
def test_a_texts_prediction_does_not_depend_on_the_rest_of_its_batch(request, architecture, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(24))
    options = {"task": "classification", "method.name": "full", "train.max_steps": 3}
    run_dir = train(
        training_config(request.getfixturevalue(architecture), data, tmp_path / "run", **options), progress=False
    ).run_dir
    short, long = "great", "the a it was and we my this the a it was and we my this wonderful"

    alone = predict_labels(run_dir, [short])[0].probabilities
    batched = predict_labels(run_dir, [short, long])[0].probabilities

    assert batched == pytest.approx(alone, abs=1e-4)


def test_predict_a_data_file_into_jsonl_written_atomically(classifier_run, tmp_path, capsys, monkeypatch):
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"id": index, "review": text}) + "\n" for index, text in enumerate(TEXTS)))
    output = tmp_path / "out" / "predictions.jsonl"
    replaced = []
    real_replace = os.replace

    def recording_replace(source, destination):
        replaced.append((os.fspath(source), os.fspath(destination)))
        return real_replace(source, destination)

    monkeypatch.setattr(os, "replace", recording_replace)

    code = main(["predict", str(classifier_run), "--data", str(data), "--column", "review", "--output", str(output)])

    assert code == 0
    assert f"3 predictions -> {output}" in capsys.readouterr().out
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [record["text"] for record in records] == TEXTS
    assert [record["label"] for record in records] == [p.label for p in predict_labels(classifier_run, TEXTS)]
    for record in records:
        assert sorted(record["probabilities"]) == LABELS
        assert sum(record["probabilities"].values()) == pytest.approx(1.0)
    # written beside the output under a temporary name, then renamed into place; nothing left over
    assert [destination for _, destination in replaced] == [str(output)]
    assert os.path.dirname(replaced[0][0]) == str(output.parent)
    assert [path.name for path in output.parent.iterdir()] == ["predictions.jsonl"]


def test_a_bad_data_file_leaves_the_previous_output_alone(classifier_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "texts.jsonl", [{"text": "great"}, {"text": ""}])
    output = tmp_path / "predictions.jsonl"
    output.write_text("previous\n")

    assert main(["predict", str(classifier_run), "--data", str(data), "--output", str(output)]) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "line 2" in err[0]
    assert output.read_text() == "previous\n"


def test_a_missing_column_names_the_option(classifier_run, tmp_path, capsys):
    data = write_jsonl(tmp_path / "texts.jsonl", [{"review": "great"}])

    assert main(["predict", str(classifier_run), "--data", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no 'text' column" in err[0] and "--column" in err[0]


def test_predict_refuses_a_language_model_run(tiny_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", make_records(8))
    run_dir = train(
        training_config(tiny_llama, data, tmp_path / "lm", **{"train.max_steps": 1}), progress=False
    ).run_dir
    capsys.readouterr()

    assert main(["predict", str(run_dir), "--text", "hello"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ") and "causal_lm" in err[0] and "classification run" in err[0]


def test_predict_refuses_a_folder_that_is_not_a_run(tiny_llama, capsys):
    assert main(["predict", str(tiny_llama), "--text", "hello"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished tunelab run" in err[0]


def test_a_templated_classifier_is_scored_and_served_on_what_it_trained_on(tiny_llama, labelled_data, tmp_path):
    """Training words each text with prompt.template / prompt.system; the in-training evaluation,
    tunelab eval and tunelab predict read the same worded inputs, so they agree on every figure."""
    from tunelab.evaluation.runner import evaluate_model

    train_file, eval_file = labelled_data
    options = {
        "task": "classification",
        "method.name": "full",
        "data.eval": eval_file,
        "prompt.system": "Sort the customer's words by mood.",
        "prompt.template": "Customer said: {text}",
        "train.max_steps": 12,
        "train.batch_size": 8,
        "train.lr": 3e-3,
    }
    run = train(training_config(tiny_llama, train_file, tmp_path / "run", **options), progress=False).run_dir
    summary = json.loads((run / "summary.json").read_text())
    report = evaluate_model(str(run), eval_file, tmp_path / "eval", progress=False)
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    served = predict_labels(run, rows)
    served_accuracy = sum(p.label == row["label"] for p, row in zip(served, rows, strict=True)) / len(rows)

    assert report.metrics["accuracy"] == pytest.approx(summary["accuracy"])
    assert report.metrics["confusion_matrix"] == summary["confusion_matrix"]
    assert served_accuracy == pytest.approx(summary["accuracy"])

    # what the model reads is the worded text: the same forward pass by hand gives the same probabilities
    tokenizer, model = load_tokenizer(str(run)), load_model(str(run)).eval()
    worded = f"Sort the customer's words by mood.\nCustomer said: {rows[0]['text']}"
    with torch.no_grad():
        by_hand = torch.softmax(model(**tokenizer(worded, return_tensors="pt")).logits[0], dim=-1)
        raw = torch.softmax(model(**tokenizer(rows[0]["text"], return_tensors="pt")).logits[0], dim=-1)
    labels = summary["labels"]
    assert [served[0].probabilities[label] for label in labels] == pytest.approx(by_hand.tolist(), abs=1e-5)
    assert not torch.allclose(by_hand, raw, atol=1e-4)
