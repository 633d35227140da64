"""``adalora``: LoRA whose rank budget is reallocated during training (PEFT's AdaLoRA).

The allocator only works if something calls ``update_and_allocate`` after every optimizer step
with the run's true total step count; HF Trainer never does, so elsewhere AdaLoRA silently stays
at its initial rank. Our loop calls it through ``after_optimizer_step``, and adds AdaLoRA's
orthogonality regularizer, which PEFT applies only when the model computes the loss itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from tunelab.config.schema import MethodOptions
from tunelab.methods.base import TrainingPlan, peft_task_type
from tunelab.methods.peft_adapter import PeftAdapterMethod

if TYPE_CHECKING:
    import torch
    from peft import PeftConfig
    from torch import nn


class AdaLoraOptions(MethodOptions):
    name: Literal["adalora"] = "adalora"
    init_r: int = Field(12, gt=0, description="rank every adapted layer starts with")
    target_r: int = Field(4, gt=0, description="average rank the budget is pruned down to")
    alpha: float = Field(32.0, gt=0, description="scaling numerator")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | str = Field("all-linear", description="modules to adapt")
    warmup_share: float = Field(0.1, ge=0, lt=1, description="share of steps before pruning starts (tinit)")
    final_share: float = Field(0.2, ge=0, lt=1, description="share of steps at the end with ranks fixed (tfinal)")
    prune_every: int = Field(1, gt=0, description="steps between budget reallocations (deltaT)")
    orth_reg_weight: float = Field(0.5, ge=0, description="weight of the orthogonality regularizer")

    @model_validator(mode="after")
    def _consistent(self) -> AdaLoraOptions:
        if self.target_r > self.init_r:
            raise ValueError("target_r must not exceed init_r")
        if self.warmup_share + self.final_share >= 1:
            raise ValueError("warmup_share + final_share must leave steps for pruning")
        return self


class AdaLora(PeftAdapterMethod):
    recommended = {"causal_lm": {"lr": 1e-3}, "classification": {"lr": 2e-3}}
    name = "adalora"
    options_type = AdaLoraOptions
    summary = "LoRA with an adaptive rank budget, pruned during training (PEFT; allocator driven)"
    trains = "SVD-form low-rank P, Lambda, Q per target layer"
    can_merge = True
    supports_resume = False  # the allocator's importance scores and rank pattern are not checkpointed

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import AdaLoraConfig

        assert isinstance(options, AdaLoraOptions)
        total = max(plan.total_steps, 3)
        tinit = int(total * options.warmup_share)
        tfinal = int(total * options.final_share)
        if total - tinit - tfinal <= 0:
            tinit, tfinal = 0, 0
        return AdaLoraConfig(
            task_type=peft_task_type(plan),
            init_r=options.init_r,
            target_r=options.target_r,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=options.target_modules,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=options.prune_every,
            total_step=total,
            orth_reg_weight=options.orth_reg_weight,
        )

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        model.base_model.update_and_allocate(step)

    def regularization(self, model: nn.Module) -> torch.Tensor | None:
        """PEFT's orthogonality penalty on P and Q: mean of ||P P^T - I|| and ||Q^T Q - I||."""
        import torch

        weight = model.peft_config[model.active_adapter].orth_reg_weight
        terms = []
        for name, parameter in model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and parameter.requires_grad:
                matrix = parameter @ parameter.T if "lora_A" in name else parameter.T @ parameter
                identity = torch.eye(*matrix.size(), out=torch.empty_like(matrix))
                terms.append(torch.norm(matrix - identity, p="fro"))
        if not terms or weight == 0:
            return None
        return weight * torch.stack(terms).mean()


def ranks(model: nn.Module) -> dict[str, int]:
    """The current rank of every AdaLoRA layer (non-zero entries of its rank mask)."""
    found = {}
    for name, module in model.named_modules():
        mask = getattr(module, "ranknum", None)
        if mask is not None and "default" in mask:
            lora_e = module.lora_E["default"]
            found[name] = int((lora_e != 0).sum())
    return found
