"""``ia3``: learned vectors that rescale keys, values and feed-forward activations (PEFT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.methods.base import TrainingPlan, peft_task_type
from tunelab.methods.peft_adapter import PeftAdapterMethod

if TYPE_CHECKING:
    from peft import PeftConfig


class Ia3Options(MethodOptions):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        None, description="modules to rescale (null: PEFT's default for the architecture)"
    )
    feedforward_modules: list[str] | None = Field(
        None, description="which of them are feed-forward (scaled on the input; null: PEFT's default)"
    )


class Ia3(PeftAdapterMethod):
    recommended = {"causal_lm": {"lr": 1e-2}, "classification": {"lr": 1e-2}}
    name = "ia3"
    options_type = Ia3Options
    summary = "rescaling vectors on keys, values and feed-forward layers (PEFT)"
    trains = "one scaling vector per target layer"
    can_merge = True

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import IA3Config

        assert isinstance(options, Ia3Options)
        return IA3Config(
            task_type=peft_task_type(plan),
            target_modules=options.target_modules,
            feedforward_modules=options.feedforward_modules,
        )
