"""AdamW with decay on matrices only, and the learning-rate schedule with warm-up.

AdamW runs as torch's fused kernel (one pass over every tensor) where the parameters train on a CPU
or a CUDA GPU without a sharding engine: the same update as the per-tensor loop to fp32 rounding,
in x0.13 the loop's step time for SmolLM2's 135M parameters and x0.26 for its LoRA r16 on a 2-core
CPU (bench/adamw_fused.py), and the optimizer Hugging Face's Trainer, hence TRL, defaults to. FSDP
and DeepSpeed shard or replace the optimizer's tensors, so they keep torch's default implementation.
"""

from __future__ import annotations

import torch
from torch import nn

from tunelab.config.schema import TrainConfig

SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
FUSED_DEVICE_TYPES = ("cpu", "cuda")  # where torch's fused AdamW is measured (CPU) and standard (CUDA)


def build_optimizer(
    model: nn.Module, config: TrainConfig, device_type: str = "cpu", sharded: bool = False
) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters, for training on ``device_type``; ``sharded``: under FSDP
    or DeepSpeed, which take the fused kernel out."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise RuntimeError("the method left no parameter to train")
    decayed = [p for p in trainable if p.ndim >= 2]
    undecayed = [p for p in trainable if p.ndim < 2]
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    fused = uses_fused_adamw(trainable, device_type, sharded)
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=config.lr, fused=fused or None)


def uses_fused_adamw(parameters: list[nn.Parameter], device_type: str, sharded: bool) -> bool:
    """Whether torch's fused AdamW runs these parameters: floating tensors on a CPU or CUDA, unsharded."""
    if sharded or device_type not in FUSED_DEVICE_TYPES:
        return False
    return all(p.is_floating_point() and p.device.type in FUSED_DEVICE_TYPES for p in parameters)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """A checkpoint's optimizer state, keeping the implementation this run chose: torch's
    ``load_state_dict`` copies the saved groups' ``fused`` and ``foreach`` too, so a checkpoint
    written by the per-tensor loop would otherwise resume on the loop (and a fused one force fused)."""
    chosen = [{key: group.get(key) for key in ("fused", "foreach")} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, implementation in zip(optimizer.param_groups, chosen, strict=True):
        group.update(implementation)
        # the fused kernel takes its step counts as fp32 on the parameters' device; the others on the CPU
        on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            param_state = optimizer.state.get(param, {})
            if "step" in param_state:
                device = param.device if on_device else torch.device("cpu")
                param_state["step"] = torch.as_tensor(param_state["step"], dtype=torch.float32, device=device)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    from transformers import get_scheduler

    warmup = int(round(config.warmup_ratio * total_steps))
    return get_scheduler(
        SCHEDULERS[config.scheduler], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps
    )
