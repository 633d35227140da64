"""Finding JSON in generated text and scoring it field by field against a reference object."""

from __future__ import annotations

import json

import pytest

from tunelab.metrics.json_fields import extract_json_object, flatten_fields, json_scores

REFERENCE = {"name": "ProjectA", "deadline": "2024-12-31", "priority": "high"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n{"a": {"b": [1, 2]}}\n```\nAnything else?', {"a": {"b": [1, 2]}}),
        ('The set {x, y} is not JSON; this is: {"a": 1} and {"b": 2}', {"a": 1}),  # first parsable object
        ('{"a": 1', None),  # cut off
        ("[1, 2]", None),  # a list is not an object
        ("no JSON here", None),
    ],
)
def test_extract_json_object(text, expected):
    assert extract_json_object(text) == expected


def test_flatten_fields_dots_nested_objects_and_keeps_lists():
    nested = {"intent": "book", "slots": {"city": "Paris", "when": {"day": "fri"}}, "tags": ["a"], "extra": {}}

    assert flatten_fields(nested) == {
        "intent": "book",
        "slots.city": "Paris",
        "slots.when.day": "fri",
        "tags": ["a"],
        "extra": {},
    }


def test_one_wrong_and_one_missing_field():
    prediction = 'Sure! {"name": "ProjectA", "priority": "low"} Hope that helps.'

    scores = json_scores(prediction, REFERENCE)

    # correct: name only. P = 1/2 predicted fields, R = 1/3 reference fields,
    # F1 = 2 * (1/2) * (1/3) / (1/2 + 1/3) = (1/3) / (5/6) = 0.4
    assert scores["valid"] is True
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)
    assert scores["exact"] is False
    assert (scores["fields_correct"], scores["fields_predicted"], scores["fields_reference"]) == (1, 2, 3)


def test_values_match_after_normalisation_and_reference_may_be_a_json_string():
    prediction = '```json\n{"name": " projecta ", "deadline": "2024-12-31", "priority": "HIGH"}\n```'

    scores = json_scores(prediction, '{"name": "ProjectA", "deadline": "2024-12-31", "priority": "high"}')

    assert scores["exact"] is True and scores["f1"] == 1.0


@pytest.mark.parametrize(
    ("predicted", "expected", "equal"),
    [
        (3, 3.0, True),  # numbers as numbers
        ("3", 3, False),  # no type coercion
        (True, 1, False),
        (None, None, True),
        (["Paris", "Rome"], ["paris", "rome"], True),
        (["Rome", "Paris"], ["Paris", "Rome"], False),  # list order matters
    ],
)
def test_value_equality(predicted, expected, equal):
    scores = json_scores(json.dumps({"v": predicted}), {"v": expected})

    assert scores["exact"] is equal


def test_nested_fields_score_one_by_one():
    reference = {"intent": "book", "slots": {"city": "Paris", "date": "friday"}}

    scores = json_scores('{"intent": "book", "slots": {"city": "paris"}}', reference)

    # intent and slots.city correct of 2 predicted and 3 reference fields: P = 1, R = 2/3, F1 = 0.8
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(0.8)


def test_an_invalid_prediction_scores_zero():
    scores = json_scores("I cannot do that.", REFERENCE)

    assert scores["valid"] is False and scores["exact"] is False
    assert scores["precision"] == scores["recall"] == scores["f1"] == 0.0
    assert (scores["fields_predicted"], scores["fields_reference"]) == (0, 3)


def test_two_empty_objects_match():
    assert json_scores("{}", {}) == {
        "valid": True,
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "exact": True,
        "fields_correct": 0,
        "fields_predicted": 0,
        "fields_reference": 0,
    }


def test_an_extra_field_costs_precision_not_recall():
    scores = json_scores('{"name": "ProjectA", "deadline": "2024-12-31", "priority": "high", "owner": "me"}', REFERENCE)

    assert scores["precision"] == pytest.approx(3 / 4) and scores["recall"] == 1.0 and scores["exact"] is False
