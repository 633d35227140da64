"""A checkpoint stored in half precision loads in fp32 on a CPU that multiplies it no faster than fp32,
and as stored everywhere else (a CPU with bf16 instructions, a GPU, a caller that names a dtype)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import cpu_matmul_rates
from tunelab.methods.loading import load_model
from tunelab.models.loading import fastest_stored_dtype


@pytest.fixture
def bf16_checkpoint(tiny_llama, tmp_path):
    folder = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.bfloat16).save_pretrained(folder)
    return folder


def _bf16_rate(monkeypatch, bf16: float) -> None:
    cpu_matmul_rates(monkeypatch, fp32=63e9, bf16=bf16)


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


@pytest.fixture(autouse=True)
def no_gpu(monkeypatch):
    """These tests ask about a CPU-only machine, on a GPU machine too."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_bf16_weights_load_in_fp32_where_the_cpu_multiplies_bf16_slower(monkeypatch, bf16_checkpoint):
    _bf16_rate(monkeypatch, 1e9)  # AVX2 alone: torch's generic bf16 kernel
    model = load_model(str(bf16_checkpoint))
    assert _dtype(model) == torch.float32
    reference = AutoModelForCausalLM.from_pretrained(bf16_checkpoint, dtype=torch.bfloat16)
    ids = torch.tensor([[1, 5, 9, 3]])
    # the same bf16 weights, exactly widened: the logits agree to bf16's rounding of the computation
    torch.testing.assert_close(model(ids).logits, reference(ids).logits.float(), atol=0.05, rtol=0.05)
    assert torch.equal(model.lm_head.weight, reference.lm_head.weight.float())


def test_bf16_weights_load_as_stored_where_bf16_pays_on_a_gpu_or_when_asked(monkeypatch, bf16_checkpoint, tiny_llama):
    _bf16_rate(monkeypatch, 345e9)  # AVX512-BF16
    assert _dtype(load_model(str(bf16_checkpoint))) == torch.bfloat16
    _bf16_rate(monkeypatch, 1e9)
    assert _dtype(load_model(str(bf16_checkpoint), dtype=torch.bfloat16)) == torch.bfloat16
    assert fastest_stored_dtype(str(tiny_llama)) is None  # stored in fp32: nothing to decide
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert fastest_stored_dtype(str(bf16_checkpoint)) is None  # the GPU computes in bf16


def test_a_quantized_checkpoint_loads_as_its_quantizer_says(monkeypatch, bf16_checkpoint):
    """GPTQ, AWQ, fp8 and bitsandbytes checkpoints say bf16 too; widening them to fp32 would break them."""
    _bf16_rate(monkeypatch, 1e9)
    config_file = bf16_checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    config_file.write_text(json.dumps(config))
    assert fastest_stored_dtype(str(bf16_checkpoint)) is None
