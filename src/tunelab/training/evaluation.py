"""Mean token loss (and perplexity) of a model on tokenized items, in one process, no training.

The training loop evaluates with its own distributed-aware variant; this one serves callers that
hold a finished model: the pipeline's forgetting table and tests.
"""

from __future__ import annotations

import math

import torch

from tunelab.data.collate import collate
from tunelab.training.loss import count_target_tokens, summed_token_loss


def mean_token_loss(model: torch.nn.Module, items: list, pad_id: int, batch_size: int = 8) -> float:
    """Loss per target token over ``items``; prompt methods' virtual tokens are cut off the logits."""
    device = next(model.parameters()).device
    total, targets = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = collate(items[start : start + batch_size], pad_id).to(device)
            logits = model(**batch.model_inputs).logits
            logits = logits[:, logits.shape[1] - batch.labels.shape[1] :]
            total += float(summed_token_loss(logits, batch.labels))
            targets += count_target_tokens(batch.labels)
    model.train(was_training)
    return total / max(targets, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # exp overflows a float past ~709
