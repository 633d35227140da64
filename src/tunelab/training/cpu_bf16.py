"""Whether bf16 pays on this CPU, measured, and the one line that says so when it does not.

A CPU computes bf16 matrix products fast only with bf16 instructions (AVX512-BF16, AMX, Arm's
BF16): there tunelab's bf16 LoRA runs measured x1.53-1.59 the fp32 tokens/s on the same batches
(bench/README.md). Without them torch falls back to a generic kernel: on a 2-core AVX2 EPYC,
1 GFLOP/s in bf16 against 63 in fp32 for a 1024-square product, and LoRA on SmolLM2 trained at
x0.06 the fp32 tokens/s: a ``train.precision=bf16`` run there is many times slower than the fp32
default while the user expects it to be faster. The decision is made from the two matmul rates
measured at the start of the run (``flops.matmul_peak_flops``, which MFU needs anyway), not from
CPU flags: what matters is the rate, and a CPU whose library emulates bf16 at near fp32 speed gains
nothing from it either. No maintained library warns about this, which is why it is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunelab.matmul_rates import gpu_present
from tunelab.training.flops import matmul_peak_flops


@dataclass(frozen=True)
class Bf16Rates:
    """bf16 and fp32 matrix-multiply rates of one CPU, in FLOP/s."""

    bf16: float
    fp32: float

    @property
    def pays(self) -> bool:
        return self.bf16 > self.fp32

    def describe(self) -> str:
        return f"bf16 matrix products at {self.bf16 / 1e9:,.1f} GFLOP/s against {self.fp32 / 1e9:,.1f} in fp32"


def cpu_bf16_rates() -> Bf16Rates:
    cpu = torch.device("cpu")
    return Bf16Rates(bf16=matmul_peak_flops(cpu, "bf16"), fp32=matmul_peak_flops(cpu, "fp32"))


def fastest_precision() -> str:
    """The ``train.precision`` that trains fastest here: ``auto`` where a GPU trains, else bf16 where
    this CPU multiplies it faster than fp32, else fp32 (``tunelab doctor`` and the examples ask)."""
    if gpu_present():
        return "auto"
    return "bf16" if cpu_bf16_rates().pays else "fp32"


def slow_bf16_warning(device: torch.device, precision: str) -> str | None:
    """The warning for a bf16 run on a CPU where bf16 multiplies no faster than fp32, else None."""
    if device.type != "cpu" or precision != "bf16":
        return None
    rates = cpu_bf16_rates()
    if rates.pays:
        return None
    return (
        f"train.precision=bf16 on a CPU without fast bf16: {rates.describe()} (measured now), so this run "
        f"trains slower than train.precision=fp32 (auto's choice on a CPU) and saves only memory"
    )
