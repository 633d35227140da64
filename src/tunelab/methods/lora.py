"""``lora`` and ``dora``: low-rank adapters through PEFT; the artifact is the adapter alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.methods.base import TrainingPlan, peft_task_type
from tunelab.methods.peft_adapter import PeftAdapterMethod

if TYPE_CHECKING:
    from peft import PeftConfig


class LoraOptions(MethodOptions):
    name: Literal["lora"] = "lora"
    r: int = Field(8, gt=0, description="rank of the update")
    alpha: float = Field(16.0, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | str = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear layer but the head)"
    )


class Lora(PeftAdapterMethod):
    recommended = {"causal_lm": {"lr": 1e-3}, "classification": {"lr": 2e-3}}
    name = "lora"
    options_type = LoraOptions
    summary = "low-rank adapters on the linear layers (PEFT)"
    trains = "low-rank A, B matrices beside each target layer"
    can_merge = True

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import LoraConfig

        assert isinstance(options, LoraOptions)
        return LoraConfig(
            task_type=peft_task_type(plan),
            r=options.r,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=options.target_modules,
        )


class DoraOptions(LoraOptions):
    name: Literal["dora"] = "dora"  # type: ignore[assignment]


class Dora(Lora):
    """LoRA with weight decomposition: a trained magnitude per output plus a low-rank direction."""

    name = "dora"
    options_type = DoraOptions
    summary = "LoRA with weight decomposition into magnitude and direction (PEFT)"
    trains = "low-rank direction update plus a magnitude vector per target layer"

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        config = super().peft_config(options, plan)
        config.use_dora = True
        return config
