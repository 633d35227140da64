"""Causal attention over each packed example on its own, with no mask, for training.

A packed row holds several examples, told apart by ``position_ids`` that restart at 0. transformers
keeps them apart with a block-diagonal mask (``masking_utils.find_packed_sequence_indices``), and a
right-padded batch gets a padding mask. SDPA on the CPU with a mask computes every (query, key)
block of the row, the masked ones and the causal upper triangle included, and repeats the key and
value heads of grouped-query attention first. Here the mask is left out where the layout makes it
redundant, and each example's span of the row runs through SDPA with ``is_causal=True``: attention
costs the sum of the examples' squared lengths instead of the row's, and what every real token sees
is the same. Right-padded rows need no mask at all: under causal attention no real token sees the
padding after it, and the padding's own outputs carry no loss.

This applies only where that reasoning holds: training and loss evaluation (no KV cache, as many
queries as keys, no sliding window shorter than the row) of the decoder-only architectures in
``ARCHITECTURES``, whose masks are causal; anything else (generation, left padding, a prefix of
virtual tokens as keys) gets transformers' own mask and SDPA. flash-attention's varlen kernels do
this on CUDA; nothing maintained does it with the CPU's SDPA, which is why it is ours. Registered
under transformers' ``AttentionInterface`` and ``AttentionMaskInterface``, so the model code is
untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMPLEMENTATION = "tunelab_segments"
ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3"})


def segment_spans(position_ids: torch.Tensor | None, rows: int, length: int) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of each example: a new one wherever the position does not follow
    on (a restart at 0 in a packed row); a repeated position (padding of a right-padded row, whose
    positions stay at the last real one) continues the span it follows."""
    if position_ids is None:
        return [[(0, length)]] * rows
    positions = position_ids.expand(rows, -1)
    step = positions[:, 1:] - positions[:, :-1]
    starts = (step != 1) & (step != 0)
    spans = []
    for row in starts.tolist():
        edges = [0] + [index + 1 for index, start in enumerate(row) if start] + [length]
        spans.append(list(zip(edges[:-1], edges[1:], strict=True)))
    return spans


def _sdpa(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def segment_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: query ``[batch, heads, tokens, dim]``; output
    ``[batch, tokens, heads, dim]``. Falls back to transformers' SDPA wherever a mask was made."""
    length = query.shape[2]
    window = kwargs.get("sliding_window")
    plain = (
        attention_mask is not None
        or key.shape[2] != length
        or length == 1
        or not getattr(module, "is_causal", True)
        or kwargs.get("is_causal") is False
        or (window is not None and window < length)
    )
    if plain:
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:  # repeated heads: the CPU kernel is faster on them than with enable_gqa
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    spans = segment_spans(kwargs.get("position_ids"), query.shape[0], length)

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)

    if all(len(row) == 1 for row in spans):
        output = attend(query, key, value)
    else:
        rows = []
        for index, row in enumerate(spans):
            q, k, v = query[index : index + 1], key[index : index + 1], value[index : index + 1]
            parts = [attend(q[:, :, start:end], k[:, :, start:end], v[:, :, start:end]) for start, end in row]
            rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
        output = torch.cat(rows, dim=0)
    return output.transpose(1, 2).contiguous(), None


def _right_padded(attention_mask: torch.Tensor) -> bool:
    return attention_mask.dim() == 2 and bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def segment_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    attention_mask: torch.Tensor | None = None,
    local_size: int | None = None,
    **kwargs: Any,
) -> torch.Tensor | None:
    """No mask where ``segment_attention_forward`` keeps the examples apart itself; transformers'
    SDPA mask otherwise (a cache, left padding, a sliding window that bites)."""
    config = kwargs.get("config")
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    redundant = (
        q_offset == 0
        and kv_offset == 0
        and q_length == kv_length
        and local_size is None
        and (window is None or window >= kv_length)
        and (attention_mask is None or _right_padded(attention_mask))
    )
    if redundant:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(
        batch_size, q_length, kv_length, q_offset=q_offset, kv_offset=kv_offset,
        attention_mask=attention_mask, local_size=local_size, **kwargs,
    )  # fmt: skip


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, segment_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, segment_mask)


def applies_to(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    architecture = getattr(config, "model_type", None)
    return architecture in ARCHITECTURES and getattr(config, "_attn_implementation", None) == "sdpa"


@contextmanager
def segment_attention(model: nn.Module | None) -> Iterator[bool]:
    """Within the block, ``model`` (a transformers model, unwrapped) attends per example where
    ``applies_to`` it; yields whether it does. The model's own implementation comes back after."""
    if model is None or not applies_to(model):
        yield False
        return
    _register()
    config = model.config
    config._attn_implementation = IMPLEMENTATION
    try:
        yield True
    finally:
        config._attn_implementation = "sdpa"
