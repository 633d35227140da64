"""Peak memory of a run: accelerator memory on CUDA, the process's peak resident memory elsewhere."""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import torch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


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
