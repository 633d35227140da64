"""Peak memory is per run, even when one process trains several runs in a row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak")
def test_reset_starts_a_new_cpu_peak():
    # A fresh process: in the test session's own, freed memory that the allocator keeps would
    # absorb the 400 MB without raising the peak, whatever the reset does.
    script = """
import torch
from tunelab.training.measure import peak_memory_bytes, reset_peak_memory
cpu = torch.device("cpu")
big = torch.ones(100_000_000)  # 400 MB
big.add_(1)
del big
before = peak_memory_bytes(cpu)
reset_peak_memory(cpu)
print(before, peak_memory_bytes(cpu))
"""
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    before, after = map(int, out.split())
    assert after < before - 200 * 2**20
