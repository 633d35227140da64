"""tunelab.training.swiglu: the lean SwiGLU keeps two (positions x intermediate) tensors instead of
three, and gives the same outputs and gradients as transformers' own MLP."""

from __future__ import annotations

import copy
import io
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from conftest import saved_bytes, training_config
from tunelab.training.recipe import train
from tunelab.training.swiglu import SiLUMul, is_swiglu_mlp, silu_mul, use_fused_swiglu


def test_silu_mul_gradients_pass_gradcheck():
    gate = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SiLUMul.apply, (gate, up))


def test_silu_mul_keeps_two_tensors_where_autograd_keeps_three():
    gate = torch.randn(64, 256, requires_grad=True)
    up = torch.randn(64, 256, requires_grad=True)
    one = 64 * 256 * 4

    assert saved_bytes(lambda: F.silu(gate * 1) * (up * 1)) == 3 * one  # gate, silu(gate), up
    assert saved_bytes(lambda: silu_mul(gate * 1, up * 1)) == 2 * one


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_mul_equals_autograds_silu_times_up(dtype):
    torch.manual_seed(0)
    gate = (torch.randn(32, 48) * 3).to(dtype).requires_grad_(True)
    up = torch.randn(32, 48).to(dtype).requires_grad_(True)
    grad = torch.randn(32, 48).to(dtype)

    plain = F.silu(gate) * up
    expected = torch.autograd.grad(plain, (gate, up), grad)
    lean = silu_mul(gate, up)
    found = torch.autograd.grad(lean, (gate, up), grad)

    assert torch.equal(lean, plain)
    tolerance = {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1.6e-2, "atol": 1e-2}
    for got, want in zip(found, expected, strict=True):
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, **tolerance)


def test_a_llama_trains_to_the_same_gradients_with_less_kept(tiny_llama):
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama)
    lean = copy.deepcopy(plain)
    layers = plain.config.num_hidden_layers
    assert sum(is_swiglu_mlp(module) for module in plain.modules()) == layers
    assert use_fused_swiglu(lean) == layers and use_fused_swiglu(lean) == 0  # once only
    assert type(copy.deepcopy(lean).model.layers[0].mlp) is type(lean.model.layers[0].mlp)  # a copy keeps it
    saved = io.BytesIO()
    torch.save(lean, saved)  # a whole model pickles: its lean classes are found by name
    saved.seek(0)
    assert type(torch.load(saved, weights_only=False).model.layers[0].mlp) is type(lean.model.layers[0].mlp)

    input_ids = torch.randint(0, plain.config.vocab_size, (2, 24))

    def loss(model):
        return model(input_ids=input_ids, labels=input_ids).loss

    plain_loss, lean_loss = loss(plain), loss(lean)
    assert lean_loss.item() == plain_loss.item()
    plain_loss.backward()
    lean_loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), lean.named_parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)

    intermediate = 2 * 24 * plain.config.intermediate_size * 4  # one fp32 (positions x intermediate) tensor
    assert saved_bytes(lambda: loss(plain)) - saved_bytes(lambda: loss(lean)) == layers * intermediate


def test_a_gpt2_is_left_as_it_is(tiny_gpt2):
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    assert use_fused_swiglu(model) == 0


def test_training_with_and_without_it_gives_the_same_loss_curve(tiny_llama, prompt_completion_file, tmp_path):
    def curve(folder, fused: bool) -> list[float]:
        options = {"method.name": "lora", "train.max_steps": 5, "train.log_every": 1, "train.lr": 1e-2}
        options["train.fused_swiglu"] = fused
        result = train(training_config(tiny_llama, prompt_completion_file, folder, **options), progress=False)
        lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines]

    lean = curve(tmp_path / "lean", True)
    assert len(lean) == 5 and lean[-1] < lean[0]
    assert lean == pytest.approx(curve(tmp_path / "plain", False), abs=1e-5)
