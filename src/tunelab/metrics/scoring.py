"""Score predictions against references with one metric, chosen or inferred from the references.

This module owns the choice of metric and the aggregation over examples; the metrics themselves
live in ``text``, ``classification`` and ``json_fields``. Every result holds the normalised
``exact_match`` and the example ``count`` beside the chosen metric's own numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import fmean
from typing import Any

from tunelab.errors import UserError
from tunelab.metrics.classification import classification_metrics
from tunelab.metrics.json_fields import json_scores, parse_reference
from tunelab.metrics.text import exact_match, map_to_label, normalize_answer, rouge_l

METRICS = ("exact_match", "accuracy", "rouge_l", "json")

# A label set: few distinct, short references, each repeated (fewer distinct values than half the references).
MAX_LABELS = 20
MAX_LABEL_WORDS = 4
# Short answers (mean words per reference) are scored by exact match, longer ones by ROUGE-L.
MAX_SHORT_ANSWER_WORDS = 5


@dataclass
class ScoreResult:
    metric: str
    metrics: dict[str, Any]
    per_example: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def infer_metric(references: Sequence[str]) -> str:
    """ "json", "accuracy", "exact_match" or "rouge_l", from what the references look like."""
    if not references:
        raise UserError("no references to infer a metric from")
    if all(_is_json_object(reference) for reference in references):
        return "json"
    distinct = {normalize_answer(reference) for reference in references}
    if (
        len(distinct) <= MAX_LABELS
        and all(len(value.split()) <= MAX_LABEL_WORDS for value in distinct)
        and len(distinct) < len(references) / 2
    ):
        return "accuracy"
    if fmean(len(reference.split()) for reference in references) <= MAX_SHORT_ANSWER_WORDS:
        return "exact_match"
    return "rouge_l"


def _choose_metric(metric: str | None, labels: Sequence[str] | None, references: Sequence[str]) -> str:
    if metric is None:
        return "accuracy" if labels else infer_metric(references)
    if metric not in METRICS:
        raise UserError(f"unknown metric '{metric}' (choose from {', '.join(METRICS)})")
    if labels and metric != "accuracy":
        raise UserError(f"labels apply to the accuracy metric, not to {metric}")
    return metric


def _distinct_labels(references: Sequence[str]) -> list[str]:
    """The references' distinct values, sorted; spellings that normalise alike are one label (the first seen)."""
    first_spelling: dict[str, str] = {}
    for reference in references:
        first_spelling.setdefault(normalize_answer(reference), reference.strip())
    return sorted(first_spelling.values())


def _reference_labels(references: Sequence[str], labels: Sequence[str]) -> list[str]:
    """Each reference as the label it equals after normalisation ("Positive." is "positive")."""
    by_normalised = {normalize_answer(label): label for label in reversed(labels)}
    canonical = []
    for index, reference in enumerate(references, start=1):
        label = by_normalised.get(normalize_answer(reference))
        if label is None:
            raise UserError(f"reference {index}: '{reference.strip()}' is not one of the labels ({', '.join(labels)})")
        canonical.append(label)
    return canonical


def _score_accuracy(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    labels = list(labels) if labels else _distinct_labels(references)
    expected = _reference_labels(references, labels)
    mapped = [map_to_label(prediction, labels) for prediction in predictions]
    metrics = classification_metrics(expected, mapped, labels)
    unmapped = sum(label is None for label in mapped)
    metrics.update(unmapped=unmapped, unmapped_rate=unmapped / len(mapped))
    per_example = [{"label": label, "correct": label == want} for label, want in zip(mapped, expected, strict=True)]
    return metrics, per_example


def _score_json(predictions: Sequence[str], references: Sequence[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    per_example = []
    for index, (prediction, reference) in enumerate(zip(predictions, references, strict=True), start=1):
        try:
            expected = parse_reference(reference)
        except ValueError as error:
            raise UserError(f"reference {index}: {error}") from None
        per_example.append(json_scores(prediction, expected))
    correct = sum(scores["fields_correct"] for scores in per_example)
    predicted = sum(scores["fields_predicted"] for scores in per_example)
    expected_fields = sum(scores["fields_reference"] for scores in per_example)
    precision = correct / predicted if predicted else 0.0
    recall = correct / expected_fields if expected_fields else 0.0
    metrics = {
        "json_validity": fmean(scores["valid"] for scores in per_example),
        "json_precision": precision,
        "json_recall": recall,
        "json_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "json_exact_match": fmean(scores["exact"] for scores in per_example),
    }
    return metrics, per_example


def _score_text(
    metric: str, predictions: Sequence[str], references: Sequence[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    score = exact_match if metric == "exact_match" else rouge_l
    per_example = [{metric: score(p, r)} for p, r in zip(predictions, references, strict=True)]
    return {metric: fmean(example[metric] for example in per_example)}, per_example


def score_predictions(
    predictions: Sequence[str],
    references: Sequence[str],
    metric: str | None = None,
    labels: Sequence[str] | None = None,
) -> ScoreResult:
    """Score each prediction against its reference and aggregate.

    ``metric`` None infers one from the references (``infer_metric``), or takes "accuracy" when
    ``labels`` are given. For "accuracy", ``labels`` default to the sorted distinct references and
    each prediction is mapped to a label with ``map_to_label`` (None when it names no label).
    """
    if len(predictions) != len(references):
        raise UserError(f"{len(predictions)} predictions but {len(references)} references: they must pair up")
    if not predictions:
        raise UserError("nothing to score: no predictions")
    chosen = _choose_metric(metric, labels, references)
    if chosen == "accuracy":
        metrics, per_example = _score_accuracy(predictions, references, labels)
    elif chosen == "json":
        metrics, per_example = _score_json(predictions, references)
    else:
        metrics, per_example = _score_text(chosen, predictions, references)
    metrics.setdefault("exact_match", fmean(exact_match(p, r) for p, r in zip(predictions, references, strict=True)))
    metrics["count"] = len(predictions)
    return ScoreResult(metric=chosen, metrics=metrics, per_example=per_example)
