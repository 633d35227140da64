"""Summed cross-entropy, so accumulation can normalise by the targets of a whole step.

Language-model labels are ``[batch, tokens]`` (next-token targets, -100 where there is no loss);
classification labels are ``[batch]`` class indices, one target per example.

Averaging per micro-batch and then across micro-batches weights a short batch's tokens more
than a long batch's (the known gradient-accumulation bug). We return the sum and the count;
the loop divides by the target tokens of every micro-batch in the optimizer step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunelab.data.tokenize import IGNORE_INDEX


def count_target_tokens(labels: torch.Tensor) -> int:
    """Tokens with a loss: every label after the first position that is not ignored."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def summed_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over target tokens of -log p(token | previous tokens), computed in float32."""
    shifted_logits = logits[:, :-1, :].float()
    shifted_labels = labels[:, 1:]
    return F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)),
        shifted_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def count_targets(labels: torch.Tensor) -> int:
    """Targets in a batch: tokens with a loss, or examples for classification labels."""
    return labels.numel() if labels.dim() == 1 else count_target_tokens(labels)


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The batch's summed cross-entropy over its targets (tokens, or one class per example)."""
    if labels.dim() == 1:
        return F.cross_entropy(logits.float(), labels, reduction="sum")
    return summed_token_loss(logits, labels)
