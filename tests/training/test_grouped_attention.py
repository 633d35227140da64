"""tunelab.training.grouped_attention: on a CPU, a grouped-query model's masked attention runs
without repeated keys and values (less kept for the backward pass), with the same loss and
gradients; the switch is restored afterwards, a user's own setting stands, a GPU is never switched."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import saved_bytes
from tunelab.training.grouped_attention import FORCE_GQA, cpu_takes_grouped_heads, grouped_attention

pytestmark = pytest.mark.skipif(not cpu_takes_grouped_heads(), reason="torch < 2.5 has no enable_gqa")


@pytest.fixture()
def no_switch(monkeypatch):
    monkeypatch.delenv(FORCE_GQA, raising=False)


def test_a_grouped_query_model_keeps_less_for_the_same_gradients(tiny_llama, no_switch):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa")
    config = model.config
    assert config.num_key_value_heads < config.num_attention_heads  # the fixture is grouped-query
    input_ids = torch.randint(0, config.vocab_size, (2, 16))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 11:] = 0  # padding: transformers passes a mask

    def loss_and_grads(model):
        model.zero_grad()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=input_ids).loss
        loss.backward()
        return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}

    repeated = saved_bytes(lambda: model(input_ids=input_ids, attention_mask=attention_mask).logits)
    plain_loss, plain_grads = loss_and_grads(model)
    with grouped_attention(torch.device("cpu")):
        assert os.environ[FORCE_GQA] == "1"
        grouped = saved_bytes(lambda: model(input_ids=input_ids, attention_mask=attention_mask).logits)
        loss, grads = loss_and_grads(copy.deepcopy(model))
    assert FORCE_GQA not in os.environ  # restored

    head_dim = config.hidden_size // config.num_attention_heads
    repeats = config.num_attention_heads - config.num_key_value_heads
    # per layer, keys and values: the repeated heads' copies are no longer kept
    assert repeated - grouped == config.num_hidden_layers * 2 * (2 * 16 * repeats * head_dim * 4)
    assert loss == pytest.approx(plain_loss, abs=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_users_setting_and_other_devices_are_left_alone(monkeypatch):
    monkeypatch.setenv(FORCE_GQA, "0")
    with grouped_attention(torch.device("cpu")):
        assert os.environ[FORCE_GQA] == "0"
    monkeypatch.delenv(FORCE_GQA)
    with grouped_attention(torch.device("cuda")):
        assert FORCE_GQA not in os.environ
