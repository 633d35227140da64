"""tunelab.data.packing: packed sequences keep order and length limits, and packing does not change the loss.

The loss test is the one that matters: if examples packed into one sequence could attend to each
other, training on packed data would optimise a different objective from training on the same
examples one by one. It compares the two on real transformers models (Llama with rotary positions,
GPT-2 with learned absolute positions) and checks, with a negative control, that it can fail.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunelab.data.collate import collate_tokens
from tunelab.data.formats import format_row
from tunelab.data.packing import pack_examples
from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample, tokenize_examples
from tunelab.training.loss import count_target_tokens, summed_token_loss

# Six examples of clearly different lengths (prompt lengths 1 to 11 words).
ROWS = [
    {"prompt": "say fox:", "completion": " fox fox"},
    {"prompt": "robot star fox dog cat paris report friday say star:", "completion": " star star"},
    {"prompt": "cat say dog:", "completion": " dog dog"},
    {"prompt": "the quick brown fox jumps over the lazy dog say cat:", "completion": " cat cat"},
    {"prompt": "once upon a time say robot:", "completion": " robot robot"},
    {"prompt": "project deadline report say friday:", "completion": " friday friday"},
]


def example(length: int, first_id: int = 10) -> TokenizedExample:
    ids = list(range(first_id, first_id + length))
    return TokenizedExample(ids, [IGNORE_INDEX] + ids[1:])


# --- packing itself -------------------------------------------------------------------------


def examples_in(sequence) -> list[list[int]]:
    """The token lists of the examples a packed sequence holds (cut where positions restart)."""
    starts = [index for index, position in enumerate(sequence.position_ids) if position == 0]
    ends = [*starts[1:], len(sequence.input_ids)]
    return [sequence.input_ids[start:end] for start, end in zip(starts, ends, strict=True)]


def test_packing_keeps_every_example_whole_with_its_labels():
    examples = [example(length, first_id=100 * index) for index, length in enumerate([5, 3, 7, 2, 6, 4])]

    packed = pack_examples(examples, max_length=10)

    held = [tokens for sequence in packed for tokens in examples_in(sequence)]
    assert sorted(held) == sorted(item.input_ids for item in examples)
    labels_of = {tuple(item.input_ids): item.labels for item in examples}
    for sequence in packed:
        offset = 0
        for tokens in examples_in(sequence):
            assert sequence.labels[offset : offset + len(tokens)] == labels_of[tuple(tokens)]
            offset += len(tokens)
    assert sum(sequence.example_count for sequence in packed) == len(examples)


def test_examples_keep_their_order_within_a_sequence_and_sequences_follow_the_data():
    examples = [example(length, first_id=100 * index) for index, length in enumerate([5, 3, 7, 2, 6, 4])]

    packed = pack_examples(examples, max_length=10)

    first_ids = [[tokens[0] // 100 for tokens in examples_in(sequence)] for sequence in packed]
    assert all(indices == sorted(indices) for indices in first_ids)
    assert [indices[0] for indices in first_ids] == sorted(indices[0] for indices in first_ids)
    assert pack_examples(examples, max_length=10) == packed  # the data alone decides


def test_packed_sequences_never_exceed_max_length_and_fill_best_fit():
    examples = [example(length) for length in [5, 3, 7, 2, 6, 4, 10, 1, 9]]

    packed = pack_examples(examples, max_length=10)

    assert all(len(sequence.input_ids) <= 10 for sequence in packed)
    # Best-fit decreasing: 45 tokens in five sequences, four of them full (in order: 8, 9, 10, 10, 10).
    assert sorted(len(sequence.input_ids) for sequence in packed) == [7, 10, 10, 10, 10]


def test_position_ids_restart_at_zero_for_every_example():
    examples = [example(length) for length in [3, 2, 4]]

    (sequence,) = pack_examples(examples, max_length=16)

    assert sequence.position_ids == [0, 1, 2, 0, 1, 0, 1, 2, 3]
    assert sequence.example_count == 3
    assert len(sequence.position_ids) == len(sequence.input_ids) == len(sequence.labels)


def test_example_of_exactly_max_length_gets_a_sequence_of_its_own():
    packed = pack_examples([example(2), example(4), example(1)], max_length=4)

    # the short ones share a sequence (in their order), listed first because it holds the first example
    assert [len(sequence.input_ids) for sequence in packed] == [3, 4]
    assert [sequence.position_ids for sequence in packed] == [[0, 1, 0], [0, 1, 2, 3]]


def test_packing_nothing_gives_nothing():
    assert pack_examples([], max_length=8) == []


# --- packed loss == unpacked loss -------------------------------------------------------------


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def model_and_tokenizer(request):
    folder = request.getfixturevalue(request.param)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    # As the training recipe does: with a KV cache transformers skips packed-sequence detection.
    model.config.use_cache = False
    return model, tokenizer


def tokenized_rows(tokenizer) -> list[TokenizedExample]:
    formatted = [format_row(row, "prompt_completion", tokenizer, train_on_prompt=False) for row in ROWS]
    items, report = tokenize_examples(tokenizer, formatted, max_length=64)
    assert len(items) == len(ROWS) and report.truncated == 0
    assert len({len(item.input_ids) for item in items}) >= 4  # genuinely different lengths
    return items


def token_losses(model, items, pad_id: int, position_ids: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
    """Mean loss per target token over one batch, and every target token's loss in order."""
    batch = collate_tokens(items, pad_id)
    inputs = dict(batch.model_inputs)
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    with torch.no_grad():
        logits = model(**inputs).logits
    mean = summed_token_loss(logits, batch.labels) / count_target_tokens(batch.labels)
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), batch.labels[:, 1:].reshape(-1), reduction="none"
    )
    return float(mean), per_token[batch.labels[:, 1:].reshape(-1) != IGNORE_INDEX]


def in_packed_order(items: list[TokenizedExample], packed) -> list[TokenizedExample]:
    """The examples in the order the packed sequences hold them (each example's tokens are unique here)."""
    by_tokens = {tuple(item.input_ids): item for item in items}
    return [by_tokens[tuple(tokens)] for sequence in packed for tokens in examples_in(sequence)]


def test_packed_loss_equals_unpacked_loss(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    items = tokenized_rows(tokenizer)
    packed = pack_examples(items, max_length=64)
    assert len(packed) < len(items)  # several examples share a sequence
    assert max(sequence.example_count for sequence in packed) >= 2

    unpacked_loss, unpacked_tokens = token_losses(model, in_packed_order(items, packed), tokenizer.pad_token_id)
    packed_loss, packed_tokens = token_losses(model, packed, tokenizer.pad_token_id)

    assert packed_loss == pytest.approx(unpacked_loss, abs=1e-5)
    # Not just the mean: every target token's loss, example by example.
    torch.testing.assert_close(packed_tokens, unpacked_tokens, atol=1e-5, rtol=0)


def test_packed_loss_with_positions_that_do_not_restart_differs(model_and_tokenizer):
    """Negative control: without restarting positions examples see each other, and the test above notices."""
    model, tokenizer = model_and_tokenizer
    items = tokenized_rows(tokenizer)
    packed = pack_examples(items, max_length=64)
    batch = collate_tokens(packed, tokenizer.pad_token_id)
    plain_positions = torch.arange(batch.labels.size(1)).expand_as(batch.labels)

    unpacked_loss, _ = token_losses(model, items, tokenizer.pad_token_id)
    leaking_loss, _ = token_losses(model, packed, tokenizer.pad_token_id, position_ids=plain_positions)

    assert abs(leaking_loss - unpacked_loss) > 100 * 1e-5


def test_packed_batch_isolates_examples_with_the_models_default_config(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    model.config.use_cache = True  # what from_pretrained gives
    items = tokenized_rows(tokenizer)

    packed = pack_examples(items, max_length=64)
    _, unpacked_tokens = token_losses(model, in_packed_order(items, packed), tokenizer.pad_token_id)
    _, packed_tokens = token_losses(model, packed, tokenizer.pad_token_id)

    torch.testing.assert_close(packed_tokens, unpacked_tokens, atol=1e-5, rtol=0)
