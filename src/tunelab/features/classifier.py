"""The feature-based classifier: a frozen encoder and a small head, fed precomputed vectors or token ids."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tunelab.features.embedding import embed_batch


class FeaturesOptions(Protocol):
    """What the head is built from (the ``features`` method's options, read without importing methods)."""

    head: str
    hidden_size: int
    dropout: float
    layer: int
    pooling: str


def build_head(options: FeaturesOptions, input_size: int, classes: int) -> nn.Module:
    """Logistic regression (one linear layer) or an MLP with one hidden layer and dropout."""
    if options.head == "logistic":
        return nn.Linear(input_size, classes)
    return nn.Sequential(
        nn.Linear(input_size, options.hidden_size),
        nn.GELU(),
        nn.Dropout(options.dropout),
        nn.Linear(options.hidden_size, classes),
    )


class FeatureClassifier(nn.Module):
    """A frozen encoder and a trained head; takes precomputed ``features`` or token ids."""

    def __init__(self, encoder: nn.Module, head: nn.Module, options: FeaturesOptions, labels: list[str]) -> None:
        super().__init__()
        self.encoder, self.head, self.options, self.labels = encoder, head, options, labels
        self.encoder.requires_grad_(False)
        self.config = encoder.config

    def forward(
        self,
        features: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **_: object,
    ) -> SequenceClassifierOutput:
        if features is None:
            assert input_ids is not None, "give features or input_ids"
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            with torch.no_grad():
                pooling, layer = self.options.pooling, self.options.layer
                features = embed_batch(self.encoder, input_ids, attention_mask, pooling, layer)
        return SequenceClassifierOutput(logits=self.head(features))
