"""Model FLOPs utilisation (MFU): the FLOPs a training step needs over what the device's matmul does.

A user deciding between settings wants one figure that says how much of the machine a run uses.
MFU is the training FLOPs of the useful work (real tokens, no padding, no recomputation) per second,
over the matrix-multiply rate this device reaches at the run's precision (or fp32's, on a CPU where
that is faster), measured here at the start of the run (so a busy or throttled machine is judged
against itself, not against a data sheet).

Counting follows PaLM's appendix (2 FLOPs per multiply-add; backward twice the forward) with two
corrections that matter for the methods tunelab compares: a frozen weight costs no weight gradient
(adapter methods do about 4 FLOPs per parameter and token, not 6), and the output head runs only on
the positions it is computed on (the target positions when ``train.chunked_loss`` is on). Attention
counts the causal (query, key) pairs of each example. No maintained library counts frozen-base
training FLOPs or measures the peak it divides by (torch's FlopCounterMode counts an executed step,
at a cost that would slow the loop it measures), which is why this is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tunelab.matmul_rates import matmul_rate
from tunelab.models.size import logical_numel
from tunelab.training.head_loss import transformers_model

PRECISION_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class ModelShape:
    """What a model's training FLOPs per token depend on."""

    body: int  # weights of the matmuls every token goes through (the output head excepted)
    body_trainable: int
    head: int  # the output head's weights (0 where the model has none)
    head_trainable: bool
    layers: int
    attention_width: int  # query/key width summed over heads

    def step_flops(self, tokens: int, head_rows: int, attention_pairs: int) -> float:
        """Training FLOPs (forward and backward) of ``tokens`` real tokens, the head on ``head_rows``
        of them, with ``attention_pairs`` causal (query, key) pairs."""
        weights = 2 * self.body * tokens + 2 * self.head * head_rows  # forward; input gradients as much again
        weight_gradients = 2 * self.body_trainable * tokens + (2 * self.head * head_rows if self.head_trainable else 0)
        # scores and weighted sum; their backward (queries, keys, weights, values) twice that
        attention = 4 * self.layers * self.attention_width * attention_pairs
        return 2 * weights + weight_gradients + 3 * attention


def _matmul_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that multiply every token by a weight matrix: Linear (4-bit included) and GPT-2's Conv1D."""
    return [
        module
        for module in model.modules()
        if isinstance(getattr(module, "weight", None), torch.Tensor)
        and (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D")
    ]


def model_shape(model: nn.Module) -> ModelShape:
    inner = transformers_model(model)
    head_module = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    body = body_trainable = 0
    for module in _matmul_modules(model):
        if module is head_module:
            continue
        count = logical_numel(module.weight)
        body += count
        if module.weight.requires_grad:
            body_trainable += count
    head = logical_numel(head_module.weight) if head_module is not None else 0
    config = getattr(inner, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = int(getattr(text_config, "num_hidden_layers", 0) or 0)
    heads = int(getattr(text_config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(text_config, "hidden_size", 0) or 0)
    head_dim = int(getattr(text_config, "head_dim", 0) or 0) or (hidden // heads if heads else 0)
    return ModelShape(
        body=body,
        body_trainable=body_trainable,
        head=head,
        head_trainable=bool(head_module is not None and head_module.weight.requires_grad),
        layers=layers,
        attention_width=heads * head_dim,
    )


def matmul_peak_flops(device: torch.device, precision: str) -> float:
    """FLOP/s of a large matrix multiply on ``device`` at ``precision`` (``matmul_rates``: measured
    once per process, about 0.3 s on a CPU, 2 s for bf16 on a CPU without bf16 instructions)."""
    dtype = PRECISION_DTYPE[precision]
    if device.type == "cpu" and dtype == torch.float16:
        dtype = torch.float32  # fp16 is CUDA-only in tunelab
    return matmul_rate(device, dtype)


def mfu_peak_flops(device: torch.device, precision: str) -> float:
    """The rate MFU divides by: the matmul peak at the run's precision, or fp32's on a CPU where that
    is faster. Without bf16 instructions a CPU multiplies bf16 many times slower than fp32 through a
    generic kernel whose speed varies with the shape, and part of a bf16 run computes in fp32, so MFU
    against the bf16 peak read 209% (bench/README.md); against the fastest rate the CPU has it says
    how much of the machine the run uses."""
    peak = matmul_peak_flops(device, precision)
    if device.type == "cpu" and precision != "fp32":
        peak = max(peak, matmul_peak_flops(device, "fp32"))
    return peak
