"""The classification head of a sequence classifier: what it adds on top of its pretrained backbone.

transformers names it differently per architecture (``classifier`` for BERT, ``score`` for Llama
and GPT-2) and BERT puts a pooler inside the backbone; methods that freeze the backbone keep
these trainable, since a fresh head is where a new label set is learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def is_encoder_type(model_type: str | None) -> bool:
    """Whether an architecture (``config.model_type``) is a bidirectional encoder: it has a masked-LM
    variant (BERT, RoBERTa, MiniLM) and so no pretrained language-model head of the causal kind."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def is_sequence_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


def classification_head(model: nn.Module) -> dict[str, nn.Module]:
    """Head modules by their name in ``model``: children beside the backbone, plus the backbone's pooler."""
    if not is_sequence_classifier(model):
        return {}
    prefix = getattr(model, "base_model_prefix", "")
    backbone = getattr(model, prefix, None)
    head = {
        name: module
        for name, module in model.named_children()
        if module is not backbone and any(True for _ in module.parameters())
    }
    pooler = getattr(backbone, "pooler", None)
    if pooler is not None and any(True for _ in pooler.parameters()):
        head[f"{prefix}.pooler"] = pooler
    return head
