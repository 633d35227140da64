"""Figures a user decides by: parameter counts and peak memory."""

from __future__ import annotations

import contextlib
import math
import resource
import sys
from pathlib import Path

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


PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def weights_bytes(model: nn.Module) -> int:
    """Memory the model's weights and buffers take (4-bit weights count as packed bytes)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak for this run, so several runs in one process each report their own."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with contextlib.suppress(OSError):  # Linux: writing 5 resets the peak RSS (VmHWM) to the current one
        PROC_CLEAR_REFS.write_text("5")


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory on CUDA; elsewhere the process's peak resident memory since reset."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # lifetime peak where /proc is absent
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB
