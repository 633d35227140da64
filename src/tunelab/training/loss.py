"""Summed next-token cross-entropy, so accumulation can normalise by the tokens of a whole step.

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
