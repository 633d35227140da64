"""What ``train.precision: auto`` means on this machine, fixed once when a run is recorded.

The default is ``auto``: bf16 autocast on a CUDA GPU that computes in bf16 (Ampere and newer;
emulated bf16 does not count), where it runs several times faster than fp32 at a loss within
rounding (TRL's SFTTrainer defaults to bf16 there too); fp32 on a CPU, where bf16's gain depends on
the CPU and the batch shape (bench/README.md, bf16 on the CPU), and on older GPUs. The run folder's
config.yaml records the precision ``auto`` became, so a summary, a resume and a later reload of the
model all name the precision that trained; a rerun into a folder that holds a run (resume, or a
comparison deciding what to keep) takes that run's recorded precision for ``auto``, so runs
recorded on another machine, or before ``auto`` was the default, are continued and kept, not
replaced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.config.schema import TunelabConfig


CONCRETE_PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_precision(precision: str) -> str:
    """``precision``, with ``auto`` replaced by bf16 or fp32 as this machine's devices decide."""
    if precision != "auto":
        return precision
    import torch  # here, not at module level: loading a config needs no torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp32"


def runs_here(precision: str | None) -> bool:
    """Whether ``precision`` is one this machine trains in (fp16 needs a CUDA GPU)."""
    if precision not in CONCRETE_PRECISIONS:
        return False
    if precision == "fp16":
        import torch

        return torch.cuda.is_available()
    return True


def with_resolved_precision(config: TunelabConfig, recorded: str | None = None) -> TunelabConfig:
    """``config`` with ``train.precision: auto`` replaced by ``recorded`` (the precision a run already
    in the folder trained with: a rerun or a resume continues it as it was, on any machine that
    trains in it), else by what it means here."""
    precision = config.train.precision
    if precision == "auto":
        precision = recorded if runs_here(recorded) else resolve_precision(precision)
    if precision == config.train.precision:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update={"precision": precision})})
