"""The matmul rate is measured once per process, quickly, and says which dtypes a CPU multiplies fast."""

from __future__ import annotations

import torch

from conftest import cpu_matmul_rates
from tunelab import matmul_rates


def test_a_multiply_over_half_a_second_is_timed_once(monkeypatch):
    """On a CPU without bf16 instructions one 1024-square bf16 multiply takes seconds: the peak
    measurement must not repeat it six times before the run starts."""
    calls = []
    real_matmul = torch.matmul
    monkeypatch.setattr(matmul_rates, "SLOW_MULTIPLY_S", 0.0)  # every multiply counts as slow
    monkeypatch.setattr(matmul_rates, "_measured", {})
    monkeypatch.setattr(torch, "matmul", lambda left, right: calls.append(1) or real_matmul(left, right))
    assert matmul_rates.matmul_rate(torch.device("cpu"), torch.float32) > 0
    assert len(calls) == 1


def test_far_slower_means_under_half_fp32s_rate_so_noise_does_not_flip_it(monkeypatch):
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=1e9)
    assert matmul_rates.cpu_multiplies_far_slower_than_fp32(torch.bfloat16)  # AVX2 alone
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=50e9)  # close to fp32: as fast within a busy machine's noise
    assert not matmul_rates.cpu_multiplies_far_slower_than_fp32(torch.bfloat16)
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=345e9)  # AVX512-BF16
    assert not matmul_rates.cpu_multiplies_far_slower_than_fp32(torch.bfloat16)
