"""Figures a user decides by: parameter counts and peak memory."""

from __future__ import annotations

import resource
import sys

import torch
from torch import nn


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each tied / shared tensor counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for parameter in model.parameters():
        key = id(parameter)
        if key in seen:
            continue
        seen.add(key)
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory on CUDA; elsewhere the process's peak resident memory."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB
