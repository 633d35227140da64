"""What the training recipe needs to know about classification: the summary's metrics.

(How a classifier's inputs are padded is the method's to say: ``Method.padding_side``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.metrics.classification import classification_metrics

if TYPE_CHECKING:
    from tunelab.data.pipeline import PreparedData


def classification_summary(data: PreparedData, predictions: list[int]) -> dict[str, Any]:
    """accuracy, macro_f1, per-class precision / recall / f1 and the confusion matrix on the eval items."""
    references = [data.labels[item.label] for item in data.eval]
    predicted = [data.labels[index] for index in predictions]
    return classification_metrics(references, predicted, data.labels)
