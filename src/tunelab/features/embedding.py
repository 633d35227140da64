"""Turn token ids into one vector per text with a frozen model: pooling over one hidden layer.

transformers gives the hidden states; the pooling (mean over real tokens, the first token, or the
last real token) and the choice of layer are ours, as sentence-transformers does for its models
but for any architecture, including decoders, and on token ids the training data already holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch
    from torch import nn

Pooling = Literal["mean", "cls", "last_token"]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """One vector per row of ``hidden`` [batch, tokens, width], ignoring padding on either side."""
    import torch

    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1)
    positions = torch.arange(hidden.shape[1], device=hidden.device).expand_as(attention_mask)
    real = attention_mask.bool()
    if pooling == "cls":  # the first real token ([CLS] for BERT)
        index = torch.where(real, positions, hidden.shape[1]).min(dim=1).values
    else:  # last_token: the last real token (what decoders summarise into)
        index = torch.where(real, positions, -1).max(dim=1).values
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def embed_batch(
    encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling, layer: int
) -> torch.Tensor:
    """Pooled hidden states of ``layer`` (python-style index over the embedding output and every block)."""
    outputs = encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    return pool(outputs.hidden_states[layer], attention_mask, pooling).float()


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(ids) for ids in sequences)
    ids = [list(seq) + [pad_id] * (width - len(seq)) for seq in sequences]
    mask = [[1] * len(seq) + [0] * (width - len(seq)) for seq in sequences]
    return torch.tensor(ids), torch.tensor(mask)


def embed_token_ids(
    encoder: nn.Module,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    pooling: Pooling = "mean",
    layer: int = -1,
    batch_size: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """[len(sequences), width] float32 embeddings; longest-first batches keep padding small."""
    import torch
    from tqdm.auto import tqdm

    device = next(encoder.parameters()).device
    order = sorted(range(len(sequences)), key=lambda index: -len(sequences[index]))
    result: torch.Tensor | None = None
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        for start in tqdm(range(0, len(order), batch_size), disable=not progress, desc="embed", unit="batch"):
            chosen = order[start : start + batch_size]
            input_ids, mask = pad_right([sequences[index] for index in chosen], pad_id)
            vectors = embed_batch(encoder, input_ids.to(device), mask.to(device), pooling, layer).cpu()
            if result is None:
                result = torch.empty(len(sequences), vectors.shape[1])
            result[torch.tensor(chosen)] = vectors
    encoder.train(was_training)
    assert result is not None, "no sequences to embed"
    return result
