"""A bf16 run on a CPU where bf16 multiplies no faster than fp32 says so in one line at its start."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import cpu_matmul_rates, training_config
from tunelab.training import flops
from tunelab.training.cpu_bf16 import Bf16Rates, slow_bf16_warning
from tunelab.training.recipe import train

SLOW = {"bf16": 1e9, "fp32": 63e9}  # an AVX2 CPU: torch's generic bf16 kernel
FAST = {"bf16": 345e9, "fp32": 170e9}  # AVX512-BF16


def test_slow_bf16_is_named_with_both_measured_rates_and_the_faster_choice(monkeypatch):
    cpu_matmul_rates(monkeypatch, **SLOW)
    warning = slow_bf16_warning(torch.device("cpu"), "bf16")
    assert "1.0 GFLOP/s against 63.0 in fp32" in warning
    assert "train.precision=fp32" in warning and "slower" in warning


def test_fast_bf16_fp32_runs_and_other_devices_get_no_warning(monkeypatch):
    cpu_matmul_rates(monkeypatch, **FAST)
    assert slow_bf16_warning(torch.device("cpu"), "bf16") is None
    cpu_matmul_rates(monkeypatch, **SLOW)
    assert slow_bf16_warning(torch.device("cpu"), "fp32") is None
    assert slow_bf16_warning(torch.device("meta"), "bf16") is None  # a GPU's bf16 is not this CPU's
    assert Bf16Rates(bf16=2.0, fp32=1.0).pays and not Bf16Rates(bf16=1.0, fp32=1.0).pays


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU machine trains on its GPU, whatever its CPU's bf16")
@pytest.mark.parametrize(("rates", "warned"), [(SLOW, True), (FAST, False)])
def test_a_bf16_training_run_warns_only_where_bf16_is_slow(
    rates, warned, monkeypatch, caplog, tiny_llama, prompt_completion_file, tmp_path
):
    cpu_matmul_rates(monkeypatch, **rates)
    config = training_config(
        tiny_llama, prompt_completion_file, tmp_path / "run", **{"train.max_steps": 1, "train.precision": "bf16"}
    )
    with caplog.at_level(logging.WARNING, logger="tunelab"):
        train(config, progress=False)
    lines = [record.getMessage() for record in caplog.records if "without fast bf16" in record.getMessage()]
    assert len(lines) == (1 if warned else 0)


def test_mfu_is_against_fp32_where_a_cpu_multiplies_fp32_faster(monkeypatch):
    """Against a slow bf16 peak MFU passed 100% (209% on an AVX2 CPU): the denominator is the fastest
    rate the CPU has; where bf16 is faster, and on a GPU, it stays the run's precision's."""
    cpu = torch.device("cpu")
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=1e9)
    assert flops.mfu_peak_flops(cpu, "bf16") == 63e9
    assert flops.mfu_peak_flops(cpu, "fp32") == 63e9
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=345e9)
    assert flops.mfu_peak_flops(cpu, "bf16") == 345e9
