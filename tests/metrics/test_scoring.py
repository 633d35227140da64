"""score_predictions and infer_metric: the metric chosen from the references, aggregates by hand."""

from __future__ import annotations

import json

import pytest

from tunelab.errors import UserError
from tunelab.metrics.scoring import METRICS, infer_metric, score_predictions


@pytest.mark.parametrize(
    ("references", "expected"),
    [
        (['{"a": 1}', ' {"b": "x"} '], "json"),
        (["positive", "negative", "Positive", "negative", "positive"], "accuracy"),  # 2 distinct < 5 / 2
        (["positive", "negative", "neutral"], "exact_match"),  # every value distinct: no label set
        (["Paris", "4", "Marie Curie"], "exact_match"),  # mean 4/3 words
        # repeated, but a 5-word value is no label: mean (4 * 5 + 1) / 5 = 4.2 words
        (["the red fox ran off"] * 4 + ["fox"], "exact_match"),
        (["The capital of France is Paris, a city on the Seine.", "It is Rome, on the Tiber."], "rouge_l"),
        (['{"a": 1}', "plain"], "exact_match"),  # not every reference is JSON
    ],
)
def test_infer_metric(references, expected):
    assert infer_metric(references) == expected
    assert expected in METRICS


def test_exact_match():
    result = score_predictions(["Paris.", "London", "4"], ["paris", "Berlin", "4"])

    assert result.metric == "exact_match"
    assert result.metrics == {"exact_match": pytest.approx(2 / 3), "count": 3}
    assert result.per_example == [{"exact_match": 1.0}, {"exact_match": 0.0}, {"exact_match": 1.0}]


def test_rouge_l():
    result = score_predictions(["a cat sat", "the dog"], ["the cat sat on the mat", "the dog"], metric="rouge_l")

    # 4/9 (LCS "cat sat", see test_text) and 1.0: mean 13/18
    assert result.metrics["rouge_l"] == pytest.approx(13 / 18)
    assert result.metrics["exact_match"] == 0.5 and result.metrics["count"] == 2
    assert result.per_example[0] == {"rouge_l": pytest.approx(4 / 9)}


def test_accuracy_maps_generated_answers_to_labels():
    references = ["positive", "positive", "positive", "negative", "negative", "negative", "positive", "negative"]
    predictions = [
        "Positive.",  # positive, right
        "positive - great film",  # positive, right
        "negative",  # wrong
        "Negative",  # right
        "I'd say negative",  # right
        "no idea",  # unmapped
        "pos",  # unmapped: not a whole label
        "NEGATIVE!",  # right
    ]

    result = score_predictions(predictions, references)

    metrics = result.metrics
    assert result.metric == "accuracy"
    assert metrics["labels"] == ["negative", "positive"]
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert (metrics["unmapped"], metrics["unmapped_rate"]) == (2, 0.25)
    # negative row: 3 predicted negative, 1 unmapped; positive row: 1 negative, 2 positive, 1 unmapped
    assert metrics["confusion_matrix"] == [[3, 0], [1, 2]]
    # negative P = 3/4, R = 3/4, F1 = 3/4; positive P = 2/2, R = 2/4, F1 = 2/3; macro (3/4 + 2/3) / 2 = 17/24
    assert metrics["per_class"]["positive"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 4}
    )
    assert metrics["macro_f1"] == pytest.approx(17 / 24)
    # normalised text equal for examples 1, 4 and 8
    assert metrics["exact_match"] == pytest.approx(3 / 8) and metrics["count"] == 8
    assert result.per_example[0] == {"label": "positive", "correct": True}
    assert result.per_example[5] == {"label": None, "correct": False}
    json.dumps(result.to_dict())  # the whole result is plain JSON


def test_given_labels_choose_accuracy_and_set_the_order():
    result = score_predictions(["Yes", "no"], ["yes", "Yes."], labels=["Yes", "No"])

    assert result.metric == "accuracy"
    assert result.metrics["labels"] == ["Yes", "No"]
    # references "yes" and "Yes." are the label "Yes"; the second prediction is "No"
    assert result.metrics["confusion_matrix"] == [[1, 1], [0, 0]]


def test_default_labels_merge_spellings_that_normalise_alike():
    result = score_predictions(["a", "b", "a", "a", "b"], ["A", "b", "a.", "A", "b"], metric="accuracy")

    assert result.metrics["labels"] == ["A", "b"] and result.metrics["accuracy"] == 1.0


def test_json_micro_averages_fields_over_examples():
    reference = {"name": "ProjectA", "deadline": "2024-12-31", "priority": "high"}
    predictions = [
        '{"name": "ProjectA", "priority": "low"}',  # 1 correct of 2 predicted, 3 expected
        'Sure! {"name": "ProjectA", "deadline": "2024-12-31", "priority": "high"}',  # 3 of 3, exact
        "I cannot do that.",  # invalid: 0 of 0, 3 expected
    ]

    result = score_predictions(predictions, [json.dumps(reference)] * 3)

    metrics = result.metrics
    assert result.metric == "json"
    assert metrics["json_validity"] == pytest.approx(2 / 3)
    assert metrics["json_exact_match"] == pytest.approx(1 / 3)
    assert metrics["json_precision"] == pytest.approx(4 / 5)  # (1 + 3 + 0) / (2 + 3 + 0)
    assert metrics["json_recall"] == pytest.approx(4 / 9)  # (1 + 3 + 0) / (3 + 3 + 3)
    assert metrics["json_f1"] == pytest.approx(4 / 7)  # 2 * 4/5 * 4/9 / (4/5 + 4/9) = (32/45) / (56/45)
    assert metrics["count"] == 3 and "exact_match" in metrics
    assert result.per_example[2]["valid"] is False


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"predictions": ["a"], "references": ["a", "b"]}, "1 predictions but 2 references"),
        ({"predictions": [], "references": []}, "nothing to score"),
        ({"predictions": ["a"], "references": ["a"], "metric": "bleu"}, "unknown metric 'bleu'"),
        ({"predictions": ["a"], "references": ["a"], "metric": "rouge_l", "labels": ["a"]}, "labels apply"),
        ({"predictions": ["{}"], "references": ["plain"], "metric": "json"}, "reference 1: not valid JSON"),
        (
            {"predictions": ["a"], "references": ["c"], "labels": ["a", "b"]},
            "reference 1: 'c' is not one of the labels",
        ),
    ],
    ids=["lengths", "empty", "metric", "labels_without_accuracy", "json_reference", "reference_not_a_label"],
)
def test_bad_input_is_a_user_error(arguments, message):
    with pytest.raises(UserError, match=message):
        score_predictions(**arguments)
