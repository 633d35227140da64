"""``ia3``: a preset of the generic PEFT method (peft_method) for PEFT's IA3: learned vectors that
rescale keys, values and feed-forward activations, on PEFT's per-architecture modules by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.methods.peft_method import PeftPreset


class Ia3Options(MethodOptions):
    name: Literal["ia3"] = "ia3"
    target_modules: list[str] | None = Field(
        None, description="modules to rescale (null: PEFT's default for the architecture)"
    )
    feedforward_modules: list[str] | None = Field(
        None, description="which of them are feed-forward (scaled on the input; null: PEFT's default)"
    )


class Ia3(PeftPreset):
    name = "ia3"
    options_type = Ia3Options
    summary = "rescaling vectors on keys, values and feed-forward layers (PEFT)"
    trains = "one scaling vector per target layer"
    peft_type = "ia3"
