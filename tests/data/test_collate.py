"""tunelab.data.collate: padding never carries a loss; unpacked batches get a mask, packed ones positions."""

from __future__ import annotations

import torch

from tunelab.data.collate import collate_tokens
from tunelab.data.packing import pack_examples
from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample

PAD = 0


def example(ids: list[int]) -> TokenizedExample:
    return TokenizedExample(ids, [IGNORE_INDEX] + ids[1:])


def test_unpacked_batch_is_right_padded_with_ignored_labels_and_a_mask():
    batch = collate_tokens([example([5, 6, 7, 8]), example([9, 10])], pad_id=PAD)

    assert batch.model_inputs["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, PAD, PAD]]
    assert batch.labels.tolist() == [[IGNORE_INDEX, 6, 7, 8], [IGNORE_INDEX, 10, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch.model_inputs["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert "position_ids" not in batch.model_inputs
    assert batch.real_tokens == 6


def test_padding_never_has_a_label_even_when_pad_is_a_real_token_id():
    # GPT-2 style tokenizers often pad with EOS: the padding must still carry no loss.
    eos = 2
    batch = collate_tokens([example([5, 6, eos]), example([7])], pad_id=eos)

    assert batch.model_inputs["input_ids"].tolist()[1] == [7, eos, eos]
    assert batch.labels.tolist()[1] == [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]


def test_packed_batch_has_restarting_positions_and_no_attention_mask():
    packed = pack_examples([example([5, 6, 7]), example([8, 9]), example([10, 11, 12, 13])], max_length=5)
    assert len(packed) == 2

    batch = collate_tokens(packed, pad_id=PAD)

    assert "attention_mask" not in batch.model_inputs
    assert batch.model_inputs["input_ids"].tolist() == [[5, 6, 7, 8, 9], [10, 11, 12, 13, PAD]]
    # Padding restarts at 0 too: it is a segment of its own that no real token attends to.
    assert batch.model_inputs["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch.labels.tolist() == [
        [IGNORE_INDEX, 6, 7, IGNORE_INDEX, 9],
        [IGNORE_INDEX, 11, 12, 13, IGNORE_INDEX],
    ]
    assert batch.real_tokens == 9


def test_batch_tensors_are_integer_and_the_same_shape():
    batch = collate_tokens([example([5, 6, 7]), example([8])], pad_id=PAD)

    tensors = [value for value in batch.model_inputs.values() if isinstance(value, torch.Tensor)]
    shapes = {tuple(tensor.shape) for tensor in tensors} | {tuple(batch.labels.shape)}
    assert batch.model_inputs["use_cache"] is False  # packed masks need the cache off
    assert shapes == {(2, 3)}
    assert batch.labels.dtype == torch.long
    assert batch.model_inputs["input_ids"].dtype == torch.long


def test_batch_moves_to_a_device_whole():
    batch = collate_tokens(pack_examples([example([5, 6]), example([7, 8, 9])], max_length=8), pad_id=PAD)

    moved = batch.to(torch.device("cpu"))

    assert set(moved.model_inputs) == {"input_ids", "position_ids", "use_cache"}
    assert torch.equal(moved.labels, batch.labels)
    assert moved.real_tokens == batch.real_tokens
