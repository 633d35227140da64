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
