"""``full``: every parameter trains; the artifact is the whole model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tunelab.config.schema import MethodOptions
from tunelab.methods.base import Method, TrainingPlan

if TYPE_CHECKING:
    from torch import nn


class FullOptions(MethodOptions):
    name: Literal["full"] = "full"


class FullFineTuning(Method):
    recommended = {
        "causal_lm": {"lr": 1e-4, "weight_decay": 0.01},
        "classification": {"lr": 1e-4, "weight_decay": 0.01},
    }
    name = "full"
    options_type = FullOptions
    summary = "train every parameter"
    trains = "every parameter"
    can_merge = True  # already standalone: "merging" writes the model as it is

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    def merge(self, model: nn.Module, directory: Path) -> nn.Module:
        return model
