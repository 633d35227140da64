"""Mean loss per target of a model on items: the training loop's evaluation and a finished model's.

One function for both: in the loop it runs under the run's Accelerator (each process takes every
n-th batch, the sums are reduced over processes) with the method that lines logits up with labels;
for a finished model (the pipeline's forgetting table, ``tunelab eval`` perplexity) it runs in one
process and drops any logits in front of the labels (prompt methods' virtual tokens).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch

from tunelab.data.collate import Batch, collate_tokens
from tunelab.training.accelerator import sum_dtype
from tunelab.training.loss import count_targets, summed_loss
from tunelab.training.steps import adapter_inputs_uncast, batch_logits, batch_loss, head_precision

if TYPE_CHECKING:
    from accelerate import Accelerator

    from tunelab.methods.base import Method

BatchMaker = Callable[[list], Batch]


class LabelAligned:
    """A finished model's logits lined up with the labels without its method: any extra positions
    in front (virtual tokens) are dropped."""

    @staticmethod
    def align_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits[:, logits.shape[1] - labels.shape[1] :]


@dataclass
class Evaluation:
    loss: float  # mean loss per target (token, or example for classification)
    predictions: list[int] | None = None  # classification: the predicted label index of each item


def evaluate(
    model: torch.nn.Module,
    items: list,
    batch_size: int,
    make_batch: BatchMaker,
    method: Method | LabelAligned | None = None,
    accelerator: Accelerator | None = None,
    chunked: bool = True,
    classify: bool = False,
) -> Evaluation:
    """Mean loss per target over ``items`` (target-weighted, across all processes); with ``classify``
    (a classification run's items) also every item's predicted label (single process: items are not split)."""
    method = method or LabelAligned()
    device = accelerator.device if accelerator else next(model.parameters()).device
    index, count = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=device, dtype=sum_dtype(device))
    classify = classify and count == 1
    predictions: list[int] = []
    with torch.no_grad():
        for start in range(index * batch_size, len(items), batch_size * count):
            batch = make_batch(items[start : start + batch_size]).to(device)
            if classify:
                logits = batch_logits(model, method, batch)
                totals[0] += summed_loss(logits, batch.labels)
                predictions.extend(logits.argmax(dim=-1).tolist())
            else:
                with head_precision(accelerator), adapter_inputs_uncast(accelerator, model):  # as in training
                    totals[0] += batch_loss(model, method, batch, chunked)
            totals[1] += count_targets(batch.labels)
    if accelerator is not None:
        totals = accelerator.reduce(totals, "sum")
    model.train(was_training)
    return Evaluation(float(totals[0] / totals[1].clamp(min=1)), predictions if classify else None)


def mean_token_loss(model: torch.nn.Module, items: list, pad_id: int, batch_size: int = 8) -> float:
    """A finished model's loss per target token over ``items``, in this process."""
    return evaluate(model, items, batch_size, partial(collate_tokens, pad_id=pad_id)).loss


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # exp overflows a float past ~709
