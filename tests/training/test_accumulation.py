"""Gradient accumulation normalises by the target tokens of the whole optimizer step.

With examples of different lengths, accumulating two micro-batches must give the gradient of
one big batch holding the same examples; a mean of per-micro-batch means would not.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import make_records
from tunelab.data.collate import collate_tokens
from tunelab.data.formats import FormattedExample
from tunelab.data.tokenize import tokenize_examples
from tunelab.methods.registry import get_method
from tunelab.training.loss import count_target_tokens, summed_token_loss
from tunelab.training.steps import accumulate

FULL = get_method("full")


def _examples(tokenizer):
    records = make_records(8, seed=3)
    # Two long completions in the first micro-batch, short ones in the second: unequal token counts.
    records[0]["completion"] = records[1]["completion"] = " robot star fox dog cat paris report friday project"
    formatted = [
        FormattedExample(r["prompt"] + r["completion"], ((len(r["prompt"]), len(r["prompt"] + r["completion"])),), True)
        for r in records
    ]
    return tokenize_examples(tokenizer, formatted, max_length=128)[0]


def _gradients(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def test_accumulated_gradient_equals_the_full_batch_gradient(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    accelerator = Accelerator()
    items = _examples(tokenizer)
    pad = tokenizer.pad_token_id

    model.zero_grad()
    accumulate(model, FULL, [collate_tokens(items[:4], pad), collate_tokens(items[4:], pad)], accelerator)
    accumulated = _gradients(model)

    model.zero_grad()
    accumulate(model, FULL, [collate_tokens(items, pad)], accelerator)
    full_batch = _gradients(model)

    for name, gradient in full_batch.items():
        torch.testing.assert_close(accumulated[name], gradient, atol=1e-6, rtol=1e-4)

    # The naive mean of per-micro-batch means differs, so the comparison above can fail.
    model.zero_grad()
    for chunk in (items[:4], items[4:]):
        batch = collate_tokens(chunk, pad)
        loss = summed_token_loss(model(**batch.model_inputs).logits, batch.labels) / count_target_tokens(batch.labels)
        (loss / 2).backward()
    naive = _gradients(model)
    name = next(iter(full_batch))
    assert not torch.allclose(naive[name], full_batch[name], atol=1e-6, rtol=1e-4)


def _bf16_lora(tiny_llama, gradient_checkpointing: bool = False, name: str = "lora"):
    from tunelab.methods.base import TrainingPlan
    from tunelab.training.accelerator import new_accelerator

    method = get_method(name)
    options = method.options_type(name=name, r=4, target_modules="all-linear", dropout=0.0)
    base = method.load_base(str(tiny_llama), "bf16")
    if gradient_checkpointing:  # as the recipe does, on the base
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(0)  # the same adapter initialisation every time
    model = method.prepare(base, options, TrainingPlan(str(tiny_llama)))
    model.train()  # as the recipe trains: checkpointing recomputes in training mode only
    accelerator = new_accelerator("bf16")
    return method, accelerator.prepare(model), accelerator


def test_bf16_adapters_take_their_inputs_uncast_for_the_same_gradients(tiny_llama, monkeypatch):
    """Under autocast PEFT's cast of each adapter layer's input to fp32 is left out: the same loss and
    the same gradients, the layers' switch back on afterwards, and checkpointing recomputes alike."""
    from contextlib import nullcontext

    from tunelab.training import steps

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    batch = collate_tokens(_examples(tokenizer), tokenizer.pad_token_id)
    method, model, accelerator = _bf16_lora(tiny_llama)
    switches = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")]
    seen = []
    for switch in switches[:1]:
        switch.register_forward_pre_hook(lambda module, _: seen.append(module.cast_input_dtype_enabled))

    uncast_loss, _ = accumulate(model, method, [batch], accelerator)
    uncast = _gradients(model)
    model.zero_grad(set_to_none=True)
    with monkeypatch.context() as patch:
        patch.setattr(steps, "adapter_inputs_uncast", lambda *_: nullcontext())
        cast_loss, _ = accumulate(model, method, [batch], accelerator)
    assert seen == [False, True] and switches and all(s.cast_input_dtype_enabled for s in switches)
    assert uncast_loss == cast_loss and uncast.keys() == _gradients(model).keys()
    for name, gradient in _gradients(model).items():
        torch.testing.assert_close(uncast[name], gradient, atol=0, rtol=0)

    method, model, accelerator = _bf16_lora(tiny_llama, gradient_checkpointing=True)
    seen.clear()
    next(m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled")).register_forward_pre_hook(
        lambda module, _: seen.append(module.cast_input_dtype_enabled)
    )
    checkpointed_loss, _ = accumulate(model, method, [batch], accelerator)
    assert seen == [False, False]  # the forward pass and its recomputation in the backward pass alike
    assert checkpointed_loss == uncast_loss
    for name, gradient in _gradients(model).items():
        torch.testing.assert_close(uncast[name], gradient, atol=0, rtol=0)


def test_dora_layers_keep_peft_s_cast_under_autocast(tiny_llama):
    """DoRA forms W + BA and its norm in its input's dtype: its input stays cast to fp32."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    batch = collate_tokens(_examples(tokenizer), tokenizer.pad_token_id)
    method, model, accelerator = _bf16_lora(tiny_llama, name="dora")
    seen = []
    next(m for m in model.modules() if getattr(m, "lora_variant", None)).register_forward_pre_hook(
        lambda module, _: seen.append(module.cast_input_dtype_enabled)
    )
    accumulate(model, method, [batch], accelerator)
    assert seen == [True]
