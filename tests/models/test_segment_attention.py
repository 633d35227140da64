"""tunelab.models.segment_attention: attending per packed example without a mask changes nothing a
real token sees (outputs and gradients equal transformers' masked SDPA), and leaves generation,
left padding and other architectures to transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunelab.data.collate import collate_tokens
from tunelab.data.packing import pack_examples
from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample
from tunelab.models.segment_attention import segment_attention, segment_spans


def example(length: int, seed: int) -> TokenizedExample:
    ids = torch.randint(5, 200, (length,), generator=torch.Generator().manual_seed(seed)).tolist()
    return TokenizedExample(ids, [IGNORE_INDEX] + ids[1:])


EXAMPLES = [example(length, seed) for seed, length in enumerate([30, 7, 19, 44, 3, 12, 25, 9])]


@pytest.fixture()
def llama(tiny_llama):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="sdpa").train()


def real_outputs_and_gradients(model, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits at the real (non-padding) positions, and every weight's gradient of their loss."""
    model.zero_grad()
    logits = model(**batch.model_inputs).logits
    targets = batch.labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )
    loss.backward()
    real = batch.labels != IGNORE_INDEX
    return logits[real].detach(), [parameter.grad.clone() for parameter in model.parameters()]


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "right-padded"])
def test_same_outputs_and_gradients_as_the_masked_path(llama, packed):
    items = pack_examples(EXAMPLES, max_length=64) if packed else EXAMPLES[:4]
    assert not packed or max(item.example_count for item in items) > 1
    batch = collate_tokens(items, pad_id=0)
    expected, expected_grads = real_outputs_and_gradients(llama, batch)
    with segment_attention(llama) as active:
        assert active and llama.config._attn_implementation == "tunelab_segments"
        got, got_grads = real_outputs_and_gradients(llama, batch)
    assert llama.config._attn_implementation == "sdpa"  # restored
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for got_grad, expected_grad in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(got_grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_without_the_packed_positions_examples_would_see_each_other(llama):
    """Negative control: the same packed rows with positions that do not restart are one example
    each, and their outputs differ; so the test above can tell the two apart."""
    batch = collate_tokens(pack_examples(EXAMPLES, max_length=64), pad_id=0)
    expected, _ = real_outputs_and_gradients(llama, batch)
    rows, length = batch.model_inputs["input_ids"].shape
    batch.model_inputs["position_ids"] = torch.arange(length).expand(rows, -1)
    with segment_attention(llama):
        got, _ = real_outputs_and_gradients(llama, batch)
    assert not torch.allclose(got, expected, atol=1e-3)


def test_generation_and_left_padding_keep_transformers_mask(llama):
    llama.eval()
    input_ids = torch.tensor([[0, 0, 11, 12, 13], [21, 22, 23, 24, 25]])
    attention_mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    settings = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        expected_logits = llama(input_ids=input_ids, attention_mask=attention_mask).logits
        expected = llama.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
        with segment_attention(llama):
            got_logits = llama(input_ids=input_ids, attention_mask=attention_mask).logits
            got = llama.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
    torch.testing.assert_close(got_logits[attention_mask.bool()], expected_logits[attention_mask.bool()])
    assert torch.equal(got, expected)


def test_other_architectures_are_left_alone(tiny_gpt2):
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2)
    before = model.config._attn_implementation
    with segment_attention(model) as active:
        assert not active and model.config._attn_implementation == before


def test_spans_restart_at_each_example_and_padding_continues_its_row():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 2, 3, 4, 5, 5, 5]])
    assert segment_spans(positions, 2, 8) == [[(0, 3), (3, 5), (5, 8)], [(0, 8)]]
    assert segment_spans(None, 2, 8) == [[(0, 8)], [(0, 8)]]
