"""classification_metrics: hand-computed accuracy, per-class scores, macro-F1 and confusion matrix."""

from __future__ import annotations

import pytest

from tunelab.errors import UserError
from tunelab.metrics.classification import classification_metrics

LABELS = ["cat", "dog", "bird"]


def test_three_classes_match_hand_computed_values():
    references = ["cat", "cat", "cat", "dog", "dog", "bird"]
    predictions = ["cat", "cat", "dog", "dog", "bird", "bird"]

    result = classification_metrics(references, predictions, LABELS)

    # rows = reference, columns = prediction, order cat, dog, bird
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result["labels"] == LABELS
    assert result["accuracy"] == pytest.approx(4 / 6)  # diagonal 2 + 1 + 1 of 6
    per_class = result["per_class"]
    # cat: P = 2/2, R = 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    assert per_class["cat"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    # dog: predicted for one cat and one dog -> P = 1/2; R = 1/2; F1 = 1/2
    assert per_class["dog"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    # bird: predicted for one dog and one bird -> P = 1/2; R = 1/1; F1 = 2 * 0.5 / 1.5 = 2/3
    assert per_class["bird"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    # (0.8 + 0.5 + 2/3) / 3 = 59/90
    assert result["macro_f1"] == pytest.approx(59 / 90)
    assert all(isinstance(count, int) for row in result["confusion_matrix"] for count in row)


@pytest.mark.parametrize("outside", [None, "fish"], ids=["unmapped", "unknown_label"])
def test_a_prediction_outside_the_labels_is_wrong_for_every_class(outside):
    result = classification_metrics(["cat", "dog"], [outside, "dog"], ["cat", "dog"])

    assert result["accuracy"] == 0.5
    # cat: never predicted (P = 0 by zero_division), its one example missed (R = 0)
    assert result["per_class"]["cat"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # dog: no false positive from the unmapped answer
    assert result["per_class"]["dog"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert result["macro_f1"] == 0.5  # (0 + 1) / 2
    # no column for it: the cat row sums to support 1 minus 1 unmapped
    assert result["confusion_matrix"] == [[0, 0], [0, 1]]


def test_macro_f1_averages_over_every_label_given():
    # bird has no support and is never predicted: its F1 is 0 and counts in the mean (1 + 0) / 2
    result = classification_metrics(["cat"], ["cat"], ["cat", "bird"])

    assert result["macro_f1"] == 0.5
    assert result["per_class"]["bird"]["support"] == 0


def test_a_reference_outside_the_labels_is_a_user_error():
    with pytest.raises(UserError, match=r"reference 2: 'fish' is not one of the labels \(cat, dog, bird\)"):
        classification_metrics(["cat", "fish"], ["cat", "cat"], LABELS)
