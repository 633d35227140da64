"""How fast this machine multiplies matrices in a dtype, measured once per process.

Two layers ask: ``models.loading``, whether a checkpoint stored in half precision runs faster as
stored or in fp32 on this CPU, and ``training`` (MFU's denominator, the slow-bf16 warning). The
figure is measured, not read off CPU flags: without bf16 instructions (AVX2 alone) torch multiplies
bf16 through a generic kernel at about 1 GFLOP/s against 60 in fp32 (bench/README.md), while a CPU
with AVX512-BF16 or AMX does it faster than fp32, and what a user's run feels is the rate. No
library measures it for a caller, which is why it is ours; it sits at the bottom so both can ask.
"""

from __future__ import annotations

import time

import torch

SLOW_MULTIPLY_S = 0.5
FAR_SLOWER = 0.5
_measured: dict[tuple, float] = {}


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large matrix multiply on ``device`` in ``dtype`` (best of a few; measured once per
    process, device, dtype and thread count: about 0.3 s on a CPU; on a CPU a multiply over half a
    second, as bf16's is without bf16 instructions, is timed once and not repeated: a GPU's first
    multiply includes its library's start-up, so there the warm-up ones never count)."""
    key = (device.type, device.index, dtype, torch.get_num_threads())
    if key not in _measured:
        size = 1024 if device.type == "cpu" else 8192
        # a private generator: drawing from the global one would shift a run's seeded dropout and
        # data order, and only in the first run of a process (the rate is measured once per process)
        generator = torch.Generator(device=device).manual_seed(0)
        left = torch.randn(size, size, device=device, generator=generator).to(dtype)
        right = torch.randn(size, size, device=device, generator=generator).to(dtype)
        best = float("inf")
        for attempt in range(6):
            _synchronize(device)
            started = time.perf_counter()
            torch.matmul(left, right)
            _synchronize(device)
            took = time.perf_counter() - started
            slow = device.type == "cpu" and took > SLOW_MULTIPLY_S
            if attempt >= 2 or slow:  # the first ones warm up kernels and caches
                best = min(best, took)
            if slow:
                break  # a multiply this slow is no warm-up effect: more of them only delay the run
        _measured[key] = 2 * size**3 / best
    return _measured[key]


def gpu_present() -> bool:
    """Whether a GPU (CUDA or Apple's MPS) is here to compute on, which makes the CPU's rates moot."""
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def cpu_multiplies_far_slower_than_fp32(dtype: torch.dtype) -> bool:
    """Whether this CPU multiplies ``dtype`` at under half fp32's rate (bf16 without AVX512-BF16 or
    AMX: about 1/60). The margin keeps a decision taken on it (the dtype a model loads in) from
    changing between runs with the noise of a busy machine where the two rates are close."""
    cpu = torch.device("cpu")
    return matmul_rate(cpu, dtype) < FAR_SLOWER * matmul_rate(cpu, torch.float32)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
