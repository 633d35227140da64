"""The run's Accelerator: its precision, its processes, and accelerate's process-wide state.

accelerate owns devices, mixed precision and data parallelism; what is ours is making one Python
process able to run several trainings in a row (a comparison does) and refusing a launch whose
processes would each train their own copy into the same run folder.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from tunelab.errors import UserError

if TYPE_CHECKING:
    from accelerate import Accelerator

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def check_precision(precision: str) -> None:
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("config error: train.precision: fp16 needs a CUDA GPU; use bf16 or fp32")


def launched_processes() -> int:
    """How many processes the launcher started (torchrun, accelerate launch, mpirun): WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1")


def new_accelerator(precision: str, options: dict[str, Any] | None = None) -> Accelerator:
    """An Accelerator for this run's precision.

    accelerate keeps its state in a process-wide singleton that refuses a second precision; we
    reset it (keeping the distributed process group) so that one Python process can run several
    trainings in a row, as a comparison does.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    launched = launched_processes()
    if launched > 1 and not torch.cuda.is_available():
        # torchrun (or any launcher that sets WORLD_SIZE) on CPU: accelerate runs data-parallel over
        # gloo only when told to use the CPU; otherwise every process would train its own copy
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=MIXED_PRECISION[precision], **(options or {}))
    if accelerator.num_processes != launched:
        raise UserError(
            f"launched as {launched} processes, but accelerate runs {accelerator.num_processes}: each would train "
            "its own copy into the same run folder; on CPU leave ACCELERATE_USE_CPU unset (or true), "
            "or launch with `accelerate launch -m tunelab train ...`"
        )
    return accelerator


def sum_dtype(device: torch.device) -> torch.dtype:
    """The dtype loss sums and counts are kept in: float64, except on MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def is_sharded(accelerator: Accelerator) -> bool:
    """Whether a sharding engine (FSDP, DeepSpeed, ...) owns the parameters and the optimizer's
    tensors, rather than one process or plain data parallelism (DDP on CPUs or GPUs)."""
    from accelerate.utils import DistributedType

    plain = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
    return accelerator.distributed_type not in plain
