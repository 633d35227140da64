"""How big a model is: parameters (trainable and total) and the bytes its weights take.

Counts a user decides by, read off any torch module: 4-bit weights count as the elements they
stand for, tied and shared tensors once.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def logical_numel(parameter: torch.Tensor) -> int:
    """Elements of the weight a parameter stands for: a 4-bit one packs two per stored byte."""
    quant_state = getattr(parameter, "quant_state", None)
    shape = getattr(quant_state, "shape", None)
    return int(math.prod(shape)) if shape is not None else parameter.numel()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each tied / shared tensor counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for parameter in model.parameters():
        key = id(parameter)
        if key in seen:
            continue
        seen.add(key)
        count = logical_numel(parameter)
        total += count
        if parameter.requires_grad:
            trainable += count
    return trainable, total


def weights_bytes(model: nn.Module) -> int:
    """Memory the model's weights and buffers take (4-bit weights count as packed bytes)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())
