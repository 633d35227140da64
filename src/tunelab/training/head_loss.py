"""The language-model loss without the (positions x vocabulary) logits tensor.

A causal LM's logits over SmolLM2's 49,152-token vocabulary for a 4 x 512 batch are 400 MB per
copy in fp32, and the softmax and its gradient make more copies, although the loss needs the
target positions only (completion-only training skips every prompt token). Here the model body
runs with transformers' ``logits_to_keep`` at one position (its head computes that one only), the final hidden
states are taken at the target positions only, and the output head and the cross-entropy run on
them in chunks: at most one chunk of logits exists at a time. For a plain linear head the gradients
are computed in the same pass, chunk by chunk (softmax minus one-hot, as Liger's fused kernel does),
so the backward pass neither keeps nor recomputes any logits; a wrapped head (an adapter on it)
runs each chunk under activation checkpointing instead. Loss and gradients equal the plain path's
(tests/training/test_head_loss.py).

Liger-Kernel's fused linear cross-entropy does this with Triton kernels on CUDA; no maintained
library does it in plain PyTorch, on CPU as well, for a model wrapped by PEFT or DDP, which is why
it is ours. It applies to architectures whose logits are exactly ``head(final hidden state)``
(``HEAD_ONLY_ARCHITECTURES``); any other model, and classification, keep the plain path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from tunelab.data.tokenize import IGNORE_INDEX

# model types whose logits are the output head applied to the last hidden state, nothing more
# (no soft-capping, no logit scale): checked against the plain path in the tests
HEAD_ONLY_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})
CHUNK_LOGITS = 2**25  # logits per chunk: 128 MiB in fp32
FUSED_GRADIENTS = True  # a plain head's gradients in the forward pass (bench/head_loss_memory.py measures both)


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP's and PEFT's wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_head_loss(model: nn.Module) -> bool:
    inner = transformers_model(model)
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    return model_type in HEAD_ONLY_ARCHITECTURES and inner.get_output_embeddings() is not None


def _chunk_loss(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module) -> torch.Tensor:
    # the hidden states in the head's own dtype (a bf16 base under fp32 adapters hands back fp32);
    # under autocast (the training steps run the head in the run's precision) the product is in that
    return F.cross_entropy(head(hidden.to(head.weight.dtype)).float(), targets, reduction="sum")


class _FusedHeadLoss(torch.autograd.Function):
    """The summed cross-entropy of ``rows`` through a plain linear head, with its gradients computed
    chunk by chunk during the forward pass (d loss / d logits = softmax - one-hot), so that no
    chunk's logits are kept or computed again for the backward pass: one head product fewer than
    checkpointing. The weight gradient is summed over the chunks in one fp32 buffer (for a bf16
    head: closer to exact than autograd's bf16 sum per chunk, so close to it, not bit-equal)."""

    @staticmethod
    def forward(ctx, rows, weight, bias, targets, rows_per_chunk):  # noqa: ANN001, ANN205
        total = rows.new_zeros((), dtype=torch.float32)
        grad_rows = torch.empty_like(rows) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        grad_bias = (
            torch.zeros_like(bias, dtype=torch.float32) if bias is not None and ctx.needs_input_grad[2] else None
        )
        for start in range(0, rows.shape[0], rows_per_chunk):
            chunk = slice(start, start + rows_per_chunk)
            inputs = rows[chunk].to(weight.dtype)
            logits = F.linear(inputs, weight, bias).float()
            total = total + F.cross_entropy(logits, targets[chunk], reduction="sum")
            grad_logits = torch.softmax(logits, dim=-1)
            grad_logits[torch.arange(logits.shape[0], device=logits.device), targets[chunk]] -= 1
            del logits
            grad_logits = grad_logits.to(weight.dtype)
            if grad_rows is not None:
                grad_rows[chunk] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight += (grad_logits.t() @ inputs).float()
            if grad_bias is not None:
                grad_bias += grad_logits.float().sum(dim=0)
        # new tensors, neither inputs nor outputs: kept on ctx, scaled in place, released after use
        ctx.grads = (grad_rows, grad_weight, grad_bias)
        ctx.dtypes = (rows.dtype, weight.dtype, bias.dtype if bias is not None else None)
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: ANN001, ANN205
        grads, ctx.grads = list(ctx.grads), None
        for index, (grad, dtype) in enumerate(zip(grads, ctx.dtypes, strict=True)):
            if grad is not None:
                grad.mul_(grad_total)
                grads[index] = grad if grad.dtype == dtype else grad.to(dtype)
        return grads[0], grads[1], grads[2], None, None


def summed_head_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """Sum over target tokens of -log p(token | previous tokens), from the final hidden states
    (``[batch, tokens, hidden]``, lined up with ``labels``) through ``head``, chunk by chunk."""
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    rows, targets = hidden[:, :-1][keep], shifted[keep]
    rows_per_chunk = max(1, CHUNK_LOGITS // max(head.weight.shape[0], 1))
    if torch.is_grad_enabled() and FUSED_GRADIENTS and type(head) is nn.Linear:  # gradients in the forward pass
        return _FusedHeadLoss.apply(rows, head.weight, head.bias, targets, rows_per_chunk)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, rows.shape[0], rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        if torch.is_grad_enabled():  # a wrapped head: keep no chunk's logits, recompute them
            total = total + checkpoint(_chunk_loss, rows[chunk], targets[chunk], head, use_reentrant=False)
        else:
            total = total + _chunk_loss(rows[chunk], targets[chunk], head)
    return total


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model``, or a module it wraps (DDP, accelerate, PEFT), runs through torch.compile:
    ``train.compile`` compiles in place, accelerate's ``dynamo_backend`` wraps in an OptimizedModule."""
    from accelerate.utils import is_compiled_module

    for _ in range(4):  # DDP -> OptimizedModule -> PeftModel -> transformers model at most
        if is_compiled_module(model) or getattr(model, "_compiled_call_impl", None) is not None:
            return True
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module) or inner is model:
            return False
        model = inner
    return False


def final_hidden_states(model: nn.Module, inputs: dict) -> torch.Tensor:
    """The model body's last hidden states (after the final norm), the head run on one position only.

    That position is named by an index tensor, not by ``logits_to_keep=1``: transformers slices
    ``[:, -1:]``, a strided view, and the head's product on it runs as a batched matmul over its
    weight expanded per row, which in bf16 on a CPU copies the whole weight once per row (SmolLM2 at
    batch 4: 226 MB and 0.29 s a forward pass, against 6 ms); an index gives contiguous rows and one
    matrix product.

    The hidden states are taken from the model body's output by a forward hook rather than asked for
    with ``output_hidden_states``: in a bf16 run accelerate turns every output of the forward pass
    to fp32, and that would be all 31 layers' hidden states of SmolLM2 (146 MB of copies for 4 x 512
    positions) to keep one. A compiled model (``train.compile``) keeps ``output_hidden_states``: a
    hook added and removed on every call would make it compile again."""
    device = next(value.device for value in inputs.values() if isinstance(value, torch.Tensor))
    first_position = torch.zeros(1, dtype=torch.long, device=device)
    if is_compiled(model):
        return model(**inputs, output_hidden_states=True, logits_to_keep=first_position).hidden_states[-1]
    body = transformers_model(model).get_decoder()  # LlamaModel, GPT2Model, ...: its output is after the final norm
    captured: list[torch.Tensor] = []
    handle = body.register_forward_hook(lambda _module, _args, output: captured.append(output[0]))
    try:
        model(**inputs, logits_to_keep=first_position)
    finally:
        handle.remove()
    return captured[-1]
