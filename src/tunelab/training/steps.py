"""One batch's loss, and one optimizer step's forward and backward over its micro-batches.

The loss is a sum over targets, divided by the target tokens of the whole accumulated step on all
processes, so accumulation and data parallelism give the gradient of the step's mean token loss
(not a mean of per-micro-batch means). A language model's loss comes from the hidden states at
the target positions only where the architecture allows (training.head_loss).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

import torch

from tunelab.data.collate import Batch
from tunelab.methods.base import Method
from tunelab.training.accelerator import sum_dtype
from tunelab.training.flops import ModelShape
from tunelab.training.head_loss import final_hidden_states, summed_head_loss, supports_head_loss, transformers_model
from tunelab.training.loss import count_targets, summed_loss
from tunelab.training.throughput import StepWork

if TYPE_CHECKING:
    from accelerate import Accelerator


def batch_logits(model: torch.nn.Module, method: Method, batch: Batch) -> torch.Tensor:
    """The model's logits for a batch, lined up with its labels."""
    logits = model(**batch.model_inputs).logits
    return method.align_logits(logits, batch.labels) if batch.labels.dim() == 2 else logits


def uses_head_loss(model: torch.nn.Module, batch: Batch) -> bool:
    """Whether a language-model batch's loss can skip the full logits (training.head_loss)."""
    return batch.labels.dim() == 2 and supports_head_loss(model)


def batch_loss(model: torch.nn.Module, method: Method, batch: Batch, chunked: bool = True) -> torch.Tensor:
    """The batch's summed loss over its targets. With ``chunked``, a language model's comes from its
    hidden states at the target positions only, where the architecture allows (training.head_loss):
    the same loss without the full logits tensor."""
    if chunked and uses_head_loss(model, batch):
        hidden = method.align_logits(final_hidden_states(model, batch.model_inputs), batch.labels)
        return summed_head_loss(hidden, batch.labels, transformers_model(model).get_output_embeddings())
    return summed_loss(batch_logits(model, method, batch), batch.labels)


def batch_flops(model: torch.nn.Module, batch: Batch, chunked: bool, shape: ModelShape | None) -> float:
    """Training FLOPs of one micro-batch's real tokens (the head on the targets only where chunked)."""
    if shape is None:
        return 0.0
    head_rows = count_targets(batch.labels) if chunked and uses_head_loss(model, batch) else batch.real_tokens
    return shape.step_flops(batch.real_tokens, head_rows, batch.attention_pairs)


def head_precision(accelerator: Accelerator | None) -> AbstractContextManager:
    """bf16 runs: the run's autocast (none without an accelerator), for the chunked head, which
    runs outside the model's forward, so that a head with fp32 weights (full fine-tuning) computes
    in bf16 like every other layer.
    Not fp16: the fused head loss computes its gradients in its forward pass, outside the loss
    scaler, where fp16 would flush small probabilities and could overflow; it stays fp32 there."""
    bf16 = accelerator is not None and accelerator.mixed_precision == "bf16"
    return accelerator.autocast() if bf16 else nullcontext()


@contextmanager
def adapter_inputs_uncast(accelerator: Accelerator | None, model: torch.nn.Module) -> Iterator[None]:
    """Under the run's autocast (none without an accelerator), PEFT's adapter layers take their
    inputs as they come.

    PEFT casts each adapter layer's input to the adapter's dtype (fp32 over a bf16 base), a copy
    that autocast undoes at the next product; under autocast it is left out, through the layers'
    ``cast_input_dtype_enabled`` switch: the same products from one copy fewer per adapted layer
    (bench/README.md: SmolLM2 LoRA in bf16, -140 MiB peak). Hold it over the backward pass too, so
    that gradient checkpointing recomputes the layers as they ran. (PEFT 0.21's own
    ``disable_input_dtype_casting`` fails on the layers that have no such switch: IA3, VeRA, FourierFT.)"""
    layers = []
    if accelerator is not None and accelerator.native_amp and accelerator.mixed_precision != "no":
        # not LoRA variants (DoRA): they form W + BA and its norm in the input's dtype, fp32's work
        layers = [
            module
            for module in model.modules()
            if getattr(module, "cast_input_dtype_enabled", False) and not getattr(module, "lora_variant", None)
        ]
    for layer in layers:
        layer.cast_input_dtype_enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.cast_input_dtype_enabled = True


def accumulate(
    model: torch.nn.Module,
    method: Method,
    batches: list[Batch],
    accelerator: Accelerator,
    fillers: list[bool] | None = None,
    chunked: bool = True,
    shape: ModelShape | None = None,
) -> tuple[float, StepWork]:
    """Forward and backward every micro-batch of one optimizer step; gradients are per target token.

    Each micro-batch's summed loss is divided by the target tokens of the whole step (on all
    processes), so the accumulated gradient is the gradient of the step's mean token loss.
    A filler micro-batch (``fillers``) runs forward and backward with weight zero and counts nothing.
    Returns the step's summed loss and what it processed (``shape`` gives its FLOPs), summed over processes.
    """
    fillers = fillers or [False] * len(batches)
    real = [batch for batch, filler in zip(batches, fillers, strict=True) if not filler]
    local = [
        sum(count_targets(batch.labels) for batch in real),
        sum(batch.real_tokens for batch in real),
        sum(batch.positions for batch in real),
        sum(batch_flops(model, batch, chunked, shape) for batch in real),
    ]
    counts = torch.tensor(local, device=accelerator.device, dtype=sum_dtype(accelerator.device))
    if accelerator.num_processes > 1:
        counts = accelerator.reduce(counts, "sum")
    targets, tokens, positions, flops = counts.tolist()
    work = StepWork(targets=int(targets), tokens=int(tokens), positions=int(positions), flops=flops)
    # DDP averages gradients over processes; multiplying by their number turns that into a sum.
    scale = accelerator.num_processes / max(work.targets, 1)
    loss_total = torch.zeros((), device=accelerator.device, dtype=sum_dtype(accelerator.device))
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        with nullcontext() if last else accelerator.no_sync(model), adapter_inputs_uncast(accelerator, model):
            with head_precision(accelerator):
                loss_sum = batch_loss(model, method, batch, chunked)
            if fillers[index]:
                loss_sum = loss_sum * 0.0
            objective = loss_sum * scale
            extra = method.regularization(accelerator.unwrap_model(model)) if last else None
            if extra is not None:  # once per optimizer step, like a term of the step's mean loss
                objective = objective + extra
            accelerator.backward(objective)
        loss_total += loss_sum.detach()
    if accelerator.num_processes > 1:
        loss_total = accelerator.reduce(loss_total, "sum")
    return float(loss_total), work
