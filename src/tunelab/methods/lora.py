"""``lora``: low-rank adapters through PEFT; the artifact is the adapter alone."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.methods.base import Method

if TYPE_CHECKING:
    from torch import nn


class LoraOptions(MethodOptions):
    name: Literal["lora"] = "lora"
    r: int = Field(8, gt=0, description="rank of the update")
    alpha: float = Field(16.0, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | str = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear layer but the head)"
    )


class PeftAdapterMethod(Method):
    """Shared save / load / merge for methods whose artifact is a PEFT adapter."""

    saves_adapter_only = True

    def peft_config(self, options: MethodOptions):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def prepare(self, model: nn.Module, options: MethodOptions) -> nn.Module:
        from peft import get_peft_model

        try:
            return get_peft_model(model, self.peft_config(options))
        except ValueError as error:
            first_line = str(error).strip().splitlines()[0]
            raise UserError(f"method {self.name}: {first_line}") from None

    def save_artifact(self, model: nn.Module, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)

    def load_artifact(self, base_model: nn.Module, directory: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, directory)

    def merge(self, model: nn.Module, directory: Path) -> nn.Module:
        if not self.can_merge:
            return super().merge(model, directory)
        return model.merge_and_unload()


class Lora(PeftAdapterMethod):
    name = "lora"
    options_type = LoraOptions
    summary = "low-rank adapters on the linear layers (PEFT)"
    can_merge = True

    def peft_config(self, options: MethodOptions):
        from peft import LoraConfig, TaskType

        assert isinstance(options, LoraOptions)
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=options.r,
            lora_alpha=options.alpha,
            lora_dropout=options.dropout,
            target_modules=options.target_modules,
        )
