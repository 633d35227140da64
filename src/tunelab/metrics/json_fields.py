"""Field-level scores for generated JSON: find the object in the text, compare it field by field.

No library scores structured output this way, so this module is ours. Nested objects become
dotted fields ({"slots": {"city": "Paris"}} has the field "slots.city"); a list is one field.

Values are compared after normalisation: strings casefolded, stripped and whitespace-collapsed;
numbers as numbers (3 == 3.0). Types are not coerced: the string "3" is not the number 3, and
true is not 1, because a program reading the output would see a different value.
"""

from __future__ import annotations

import json
from typing import Any


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (prose, or ``` fences, around it are fine), or None."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return value  # raw_decode from "{" succeeds only with an object
    return None


def flatten_fields(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys; lists, and empty objects, stay one field each."""
    fields: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            fields.update(flatten_fields(value, prefix=f"{name}."))
        else:
            fields[name] = value
    return fields


def _comparable(value: Any) -> Any:
    """A form in which equal values compare equal (and a bool never equals a number)."""
    if isinstance(value, str):
        return ("string", " ".join(value.casefold().split()))
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, list):
        return ("list", tuple(_comparable(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((key, _comparable(item)) for key, item in value.items())))
    return ("other", repr(value))


def parse_reference(reference: dict[str, Any] | str) -> dict[str, Any]:
    """A reference as an object; ValueError when a string reference is not a JSON object."""
    if isinstance(reference, dict):
        return reference
    try:
        value = json.loads(reference)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _ratio(part: int, whole: int, both_empty: bool) -> float:
    if whole:
        return part / whole
    return 1.0 if both_empty else 0.0


def json_scores(prediction_text: str, reference: dict[str, Any] | str) -> dict[str, Any]:
    """Per-example scores: ``valid``, field ``precision``/``recall``/``f1``, ``exact`` and the field counts.

    A field is correct when both objects have it and its values are equal after normalisation.
    The counts (``fields_correct``, ``fields_predicted``, ``fields_reference``) let a caller
    micro-average over many examples. An unparsable prediction scores 0 with no predicted fields.
    Two empty objects match exactly (every ratio 1.0).
    """
    expected = flatten_fields(parse_reference(reference))
    found = extract_json_object(prediction_text)
    predicted = flatten_fields(found) if found is not None else {}
    correct = sum(
        1 for key, value in predicted.items() if key in expected and _comparable(value) == _comparable(expected[key])
    )
    both_empty = found is not None and not predicted and not expected
    precision = _ratio(correct, len(predicted), both_empty)
    recall = _ratio(correct, len(expected), both_empty)
    return {
        "valid": found is not None,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "exact": found is not None and correct == len(predicted) == len(expected),
        "fields_correct": correct,
        "fields_predicted": len(predicted),
        "fields_reference": len(expected),
    }
