"""Peak memory is per run, even when one process trains several runs in a row."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunelab.training.measure import count_parameters, peak_memory_bytes, reset_peak_memory

CPU = torch.device("cpu")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset the peak")
def test_reset_starts_a_new_cpu_peak():
    big = torch.ones(100_000_000)  # 400 MB
    big.add_(1)
    del big
    before = peak_memory_bytes(CPU)
    reset_peak_memory(CPU)
    assert peak_memory_bytes(CPU) < before - 200 * 2**20


def test_tied_parameters_are_counted_once():
    embedding = torch.nn.Embedding(10, 4)
    head = torch.nn.Linear(4, 10, bias=False)
    head.weight = embedding.weight
    model = torch.nn.ModuleList([embedding, head])
    head.requires_grad_(False)
    assert count_parameters(model) == (0, 40)
