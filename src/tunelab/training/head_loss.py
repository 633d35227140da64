"""The language-model loss without the (positions x vocabulary) logits tensor.

A causal LM's logits over SmolLM2's 49,152-token vocabulary for a 4 x 512 batch are 400 MB per
copy in fp32, and the softmax and its gradient make more copies, although the loss needs the
target positions only (completion-only training skips every prompt token). Here the model body
runs with transformers' ``logits_to_keep=1`` (its head computes one position), the final hidden
states are taken at the target positions only, and the output head and the cross-entropy run on
them in chunks under activation checkpointing: at most one chunk of logits exists at a time,
forward or backward. Loss and gradients equal the plain path's (tests/training/test_head_loss.py).

Liger-Kernel's fused linear cross-entropy does this with Triton kernels on CUDA; no maintained
library does it in plain PyTorch, on CPU as well, for a model wrapped by PEFT or DDP, which is why
it is ours. It applies to architectures whose logits are exactly ``head(final hidden state)``
(``HEAD_ONLY_ARCHITECTURES``); any other model, and classification, keep the plain path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tunelab.data.tokenize import IGNORE_INDEX

if TYPE_CHECKING:
    from torch import nn

# model types whose logits are the output head applied to the last hidden state, nothing more
# (no soft-capping, no logit scale): checked against the plain path in the tests
HEAD_ONLY_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})
CHUNK_LOGITS = 2**25  # logits per chunk: 128 MiB in fp32


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP's and PEFT's wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_head_loss(model: nn.Module) -> bool:
    inner = transformers_model(model)
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    return model_type in HEAD_ONLY_ARCHITECTURES and inner.get_output_embeddings() is not None


def _chunk_loss(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module) -> torch.Tensor:
    # the head runs outside the model's forward, so outside accelerate's autocast: give it the
    # hidden states in its own weights' dtype (a bf16 base under fp32 adapters hands back fp32)
    return F.cross_entropy(head(hidden.to(head.weight.dtype)).float(), targets, reduction="sum")


def summed_head_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Sum over target tokens of -log p(token | previous tokens), from the final hidden states
    (``[batch, tokens, hidden]``, lined up with ``labels``) through ``head``, chunk by chunk."""
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    rows, targets = hidden[:, :-1][keep], shifted[keep]
    rows_per_chunk = max(1, CHUNK_LOGITS // max(head.weight.shape[0], 1))
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        if torch.is_grad_enabled():  # keep no chunk's logits for the backward pass: recompute them
            total = total + checkpoint(_chunk_loss, rows[chunk], targets[chunk], head, use_reentrant=False)
        else:
            total = total + _chunk_loss(rows[chunk], targets[chunk], head)
    return total


def final_hidden_states(model: nn.Module, inputs: dict) -> torch.Tensor:
    """The model body's last hidden states (after the final norm), the head run on one position only."""
    return model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
