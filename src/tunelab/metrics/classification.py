"""Classification metrics over label strings, computed by scikit-learn.

Ours is only the shape of the result and the handling of predictions outside the label set (an
answer ``map_to_label`` could not map): such a prediction is wrong for every class. It lowers
accuracy and its reference class's recall, is no class's false positive, and has no column in the
confusion matrix, so a matrix row sums to that class's support minus its unmapped predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelab.errors import UserError

# Stands in for every prediction outside ``labels``; never a real label (it starts with a NUL).
_OUTSIDE_LABELS = "\x00outside-labels"


def _check_references(references: Sequence[str], labels: Sequence[str]) -> None:
    known = set(labels)
    for index, reference in enumerate(references, start=1):
        if reference not in known:
            raise UserError(f"reference {index}: '{reference}' is not one of the labels ({', '.join(labels)})")


def classification_metrics(
    references: Sequence[str], predictions: Sequence[str | None], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``labels``, per-class precision/recall/F1/support and the confusion matrix.

    Confusion matrix rows are reference labels and columns predicted labels, both in ``labels``
    order. Undefined ratios (a class never predicted, or absent from the references) count as 0.
    """
    # Imported on use: ``tunelab`` imports every command module to build its parser.
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    _check_references(references, labels)
    known = set(labels)
    predicted = [prediction if prediction in known else _OUTSIDE_LABELS for prediction in predictions]
    precision, recall, f1, support = precision_recall_fscore_support(
        references, predicted, labels=labels, zero_division=0
    )
    matrix = confusion_matrix(references, predicted, labels=[*labels, _OUTSIDE_LABELS])[: len(labels), : len(labels)]
    per_class = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    return {
        "accuracy": float(accuracy_score(references, predicted)),
        "macro_f1": float(f1.mean()) if labels else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "labels": labels,
    }
