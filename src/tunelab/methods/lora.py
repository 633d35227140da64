"""``lora`` and ``dora``: presets of the generic PEFT method (peft_method) for PEFT's LoRA, under
tunelab's option names (``alpha``, ``dropout``) and defaults (r 8, alpha 16, every linear layer)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.methods.peft_method import PeftPreset


class LoraOptions(MethodOptions):
    name: Literal["lora"] = "lora"
    r: int = Field(8, gt=0, description="rank of the update")
    alpha: float = Field(16.0, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | str = Field(
        "all-linear", description="module names to adapt, or all-linear (every linear layer but the head)"
    )


class Lora(PeftPreset):
    name = "lora"
    options_type = LoraOptions
    summary = "low-rank adapters on the linear layers (PEFT)"
    trains = "low-rank A, B matrices beside each target layer"
    peft_type = "lora"
    renamed = {"alpha": "lora_alpha", "dropout": "lora_dropout"}


class DoraOptions(LoraOptions):
    name: Literal["dora"] = "dora"  # type: ignore[assignment]


class Dora(Lora):
    """LoRA with weight decomposition: a trained magnitude per output plus a low-rank direction."""

    name = "dora"
    options_type = DoraOptions
    summary = "LoRA with weight decomposition into magnitude and direction (PEFT)"
    trains = "low-rank direction update plus a magnitude vector per target layer"
    fixed = {"use_dora": True}
