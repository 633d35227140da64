"""What the training recipe needs to know about classification: how to pad, and the summary's metrics.

Decoders (no masked-LM head: Llama, GPT-2, Qwen2) read the label from the last position, so they
are padded on the left; encoders (BERT, RoBERTa) read it from the first ([CLS]) and are padded on
the right, where their absolute positions stay those of pretraining.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.metrics.classification import classification_metrics
from tunelab.models.heads import is_encoder_type

if TYPE_CHECKING:
    from torch import nn

    from tunelab.data.pipeline import PreparedData


def is_encoder(model: nn.Module) -> bool:
    """Whether the model's architecture is a bidirectional encoder (``models.heads.is_encoder_type``)."""
    return is_encoder_type(getattr(getattr(model, "config", None), "model_type", None))


def padding_side_for(model: nn.Module) -> str:
    return "right" if is_encoder(model) else "left"


def classification_summary(data: PreparedData, predictions: list[int]) -> dict[str, Any]:
    """accuracy, macro_f1, per-class precision / recall / f1 and the confusion matrix on the eval items."""
    references = [data.labels[item.label] for item in data.eval]
    predicted = [data.labels[index] for index in predictions]
    return classification_metrics(references, predicted, data.labels)
