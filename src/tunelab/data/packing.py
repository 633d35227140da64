"""Pack several tokenized examples into each sequence without letting them see each other.

Each packed sequence carries ``position_ids`` that restart at 0 for every example. With no 2-D
attention mask and no KV cache (``collate`` passes ``use_cache=False``), transformers
(``masking_utils.find_packed_sequence_indices``) turns restarting positions into a block-diagonal
causal mask, so attention never crosses an example boundary, for SDPA, eager and flash attention.
Examples keep their order; a sequence is closed when the next example does not fit (first-fit
would reorder data and break the seeded order).
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.data.tokenize import TokenizedExample


@dataclass
class PackedSequence:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    @property
    def example_count(self) -> int:
        return sum(position == 0 for position in self.position_ids)


def pack_examples(examples: list[TokenizedExample], max_length: int) -> list[PackedSequence]:
    """Greedy in-order packing into sequences of at most ``max_length`` tokens."""
    packed: list[PackedSequence] = []
    current = PackedSequence([], [], [])
    for example in examples:
        length = len(example.input_ids)
        if current.input_ids and len(current.input_ids) + length > max_length:
            packed.append(current)
            current = PackedSequence([], [], [])
        current.input_ids.extend(example.input_ids)
        current.labels.extend(example.labels)
        current.position_ids.extend(range(length))
    if current.input_ids:
        packed.append(current)
    return packed
