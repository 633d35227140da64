"""SwiGLU feed-forward layers that keep only their two inputs for the backward pass.

A Llama-family MLP computes ``down_proj(silu(gate_proj(x)) * up_proj(x))``. For the activation and
the product, autograd keeps three (positions x intermediate) tensors for the backward pass: the
gate's output (for the SiLU), the SiLU's output and the up projection's output (for the product);
the product itself is kept by what reads it next (down_proj's LoRA, or its weight gradient). Here
``silu(gate) * up`` is one autograd function that keeps the gate's and the up projection's outputs
and recomputes the SiLU in the backward pass, an elementwise cost. On SmolLM2 (intermediate size
1,536, 30 layers) that is 12 MiB less per layer for 2,048 fp32 positions, 360 MiB in all.

Liger-Kernel's ``LigerSiLUMulFunction`` does this in Triton on CUDA; no maintained library does it
in plain PyTorch, for the CPU as well, which is why it is ours. It applies to the MLP classes in
``SWIGLU_MLPS``, whose forward is exactly that expression (tests/training/test_swiglu.py checks
it against transformers' own), and only where their activation is SiLU; any other module keeps its
forward. Off with ``train.fused_swiglu=false``, and under ``train.compile``, whose partitioner
recomputes such elementwise work by itself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# transformers' MLP classes computing down_proj(act_fn(gate_proj(x)) * up_proj(x))
SWIGLU_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"})
SILU_CLASSES = frozenset({"SiLU", "SiLUActivation"})  # torch's and transformers' SiLU modules


class SiLUMul(torch.autograd.Function):
    """``silu(gate) * up``, keeping ``gate`` and ``up`` only; the backward pass recomputes the SiLU
    and runs torch's own fused SiLU derivative, so it adds one elementwise pass to autograd's."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        gate, up = ctx.saved_tensors
        grad_gate = grad_up = None
        if ctx.needs_input_grad[1]:
            grad_up = grad * F.silu(gate)
        if ctx.needs_input_grad[0]:
            grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return SiLUMul.apply(gate, up)


def _lean_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


_LEAN_CLASSES: dict[type, type] = {}


def _lean_class(cls: type) -> type:
    """A subclass of ``cls`` with the lean forward: a class, not a bound method on the instance, so
    that ``copy.deepcopy(model)`` and pickling keep it."""
    if cls not in _LEAN_CLASSES:
        # named after the module too (Qwen2MLP exists in several), and kept in this module's namespace
        # so that pickle (torch.save of a whole model) finds it
        name = f"Lean{cls.__name__}_{cls.__module__.replace('.', '_')}"
        lean = type(name, (cls,), {"forward": _lean_forward, "__module__": __name__, "__qualname__": name})
        globals()[name] = _LEAN_CLASSES[cls] = lean
    return _LEAN_CLASSES[cls]


def is_swiglu_mlp(module: nn.Module) -> bool:
    return type(module).__name__ in SWIGLU_MLPS and type(getattr(module, "act_fn", None)).__name__ in SILU_CLASSES


def use_fused_swiglu(model: nn.Module) -> int:
    """Give every SwiGLU MLP in ``model`` the lean forward; how many there were."""
    count = 0
    for module in model.modules():
        if is_swiglu_mlp(module):
            module.__class__ = _lean_class(type(module))
            count += 1
    return count
