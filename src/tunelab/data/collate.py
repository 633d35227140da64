"""Turn a list of examples (or packed sequences) into padded tensors for one micro-batch.

Language-model items get token labels (``collate_tokens``); classification items a label index
each (``collate_classification``), and embedded items (feature-based training) their stacked
feature vectors (``collate_embedded``). Which one a run uses is its method's to say
(``Method.batch_function``).

Unpacked batches get a 2-D ``attention_mask``. Packed batches get ``position_ids`` and no mask
(see ``packing``); their padding is given positions restarting at 0, so it forms a segment of
its own that no real token attends to. Every batch asks for ``use_cache=False``: transformers
builds the packed (block-diagonal) mask only when there is no KV cache, and training needs none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.data.classification import ClassificationExample, EmbeddedExample
from tunelab.data.packing import PackedSequence
from tunelab.data.tokenize import IGNORE_INDEX, TokenizedExample

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase


def padding_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id that fills padding: pad, else EOS, else 0 (padding is masked out of attention and loss)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


@dataclass
class Batch:
    # Tensors plus ``use_cache=False``: with a cache, transformers skips the packed-sequence mask.
    model_inputs: dict[str, torch.Tensor | bool]
    labels: torch.Tensor
    real_tokens: int  # tokens that are not padding
    attention_pairs: int = 0  # causal (query, key) pairs within the examples: the useful attention work

    @property
    def positions(self) -> int:
        """Positions the model computes, padding included (embedded items: their tokens, already done)."""
        input_ids = self.model_inputs.get("input_ids")
        return int(input_ids.numel()) if input_ids is not None else self.real_tokens

    def to(self, device: torch.device) -> Batch:
        inputs = {key: value.to(device) if hasattr(value, "to") else value for key, value in self.model_inputs.items()}
        return Batch(inputs, self.labels.to(device), self.real_tokens, self.attention_pairs)


def causal_pairs(length: int) -> int:
    """(query, key) pairs of one example under a causal mask: token i attends to i + 1 tokens."""
    return length * (length + 1) // 2


def collate_embedded(items: list[EmbeddedExample]) -> Batch:
    """Stored embeddings stacked, with their label indices (feature-based classification)."""
    import torch

    labels = torch.tensor([item.label for item in items])
    features = torch.stack([item.features for item in items])
    return Batch({"features": features}, labels, sum(item.tokens for item in items))


def collate_classification(items: list[ClassificationExample], pad_id: int, padding_side: str = "right") -> Batch:
    """Texts padded to the longest (on ``padding_side``) with their label indices.

    Decoders classify from the last position; they are padded on the left so that it is the
    text's last token even where transformers cannot see the ids (prompt tuning passes embeddings).
    """
    import torch

    labels = torch.tensor([item.label for item in items])
    width = max(len(item.input_ids) for item in items)
    input_ids, masks = [], []
    for item in items:
        padding = [pad_id] * (width - len(item.input_ids))
        ones, zeros = [1] * len(item.input_ids), [0] * len(padding)
        left = padding_side == "left"
        input_ids.append(padding + item.input_ids if left else item.input_ids + padding)
        masks.append(zeros + ones if left else ones + zeros)
    mask = torch.tensor(masks)
    inputs: dict[str, torch.Tensor | bool] = {"input_ids": torch.tensor(input_ids), "attention_mask": mask}
    if padding_side == "left":  # positions count from each text's first token (GPT-2's are absolute)
        inputs["position_ids"] = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    lengths = [len(item.input_ids) for item in items]
    return Batch(inputs, labels, sum(lengths), sum(causal_pairs(length) for length in lengths))


def collate_tokens(items: list[TokenizedExample] | list[PackedSequence], pad_id: int) -> Batch:
    import torch

    width = max(len(item.input_ids) for item in items)
    input_ids, labels, masks, positions = [], [], [], []
    for item in items:
        padding = width - len(item.input_ids)
        input_ids.append(item.input_ids + [pad_id] * padding)
        labels.append(item.labels + [IGNORE_INDEX] * padding)
        masks.append([1] * len(item.input_ids) + [0] * padding)
        if isinstance(item, PackedSequence):
            positions.append(item.position_ids + list(range(padding)))
    inputs: dict[str, torch.Tensor | bool] = {"input_ids": torch.tensor(input_ids), "use_cache": False}
    if positions:
        inputs["position_ids"] = torch.tensor(positions)
    else:
        inputs["attention_mask"] = torch.tensor(masks)
    task_ids = [getattr(item, "task_id", None) for item in items]
    if all(task_id is not None for task_id in task_ids):
        inputs["task_ids"] = torch.tensor(task_ids)
    real_tokens = sum(len(item.input_ids) for item in items)
    pairs = sum(
        sum(position + 1 for position in item.position_ids)
        if isinstance(item, PackedSequence)
        else causal_pairs(len(item.input_ids))
        for item in items
    )
    return Batch(inputs, torch.tensor(labels), real_tokens, pairs)
