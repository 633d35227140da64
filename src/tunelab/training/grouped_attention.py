"""Grouped-query attention without repeated keys and values, for training on a CPU.

transformers' SDPA attention repeats a grouped-query model's key and value heads up to the query
heads' count (``repeat_kv``) whenever it passes an attention mask, which padded and packed batches
always have: CUDA's fused kernels take no mask together with grouped heads. Autograd then keeps the
repeated copies for the backward pass: on SmolLM2 (9 query heads, 3 key-value heads of 64) that is
6 MiB more per layer for 2,048 fp32 positions. PyTorch's CPU kernel takes the mask and grouped heads
together (``enable_gqa``, torch 2.5 and newer), and transformers lets a process ask for that
(``TRANSFORMERS_SDPA_FORCE_GQA=1``); no library sets it for CPU training only, which is why this is
ours. A training run on the CPU sets the switch for its own duration and restores it; a value the
user set (``0`` keeps the repeat) is left alone, and other devices are never switched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


def cpu_takes_grouped_heads() -> bool:
    """Whether this torch's SDPA has ``enable_gqa`` (2.5 and newer)."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 5)


@contextmanager
def grouped_attention(device: torch.device) -> Iterator[None]:
    """On a CPU, transformers' SDPA attention hands grouped heads to torch as they are, inside."""
    if device.type != "cpu" or FORCE_GQA in os.environ or not cpu_takes_grouped_heads():
        yield
        return
    os.environ[FORCE_GQA] = "1"
    try:
        yield
    finally:
        os.environ.pop(FORCE_GQA, None)
