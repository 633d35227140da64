"""AdamW with decay on matrices only, and the learning-rate schedule with warm-up."""

from __future__ import annotations

import torch
from torch import nn

from tunelab.config.schema import TrainConfig

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise RuntimeError("the method left no parameter to train")
    decayed = [p for p in trainable if p.ndim >= 2]
    undecayed = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=config.lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    from transformers import get_scheduler

    warmup = int(round(config.warmup_ratio * total_steps))
    return get_scheduler(
        SCHEDULERS[config.scheduler], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
    )
