"""``last_layers``: only the top N transformer blocks, the final norm and the output head train.

No library offers this as a method (it is a handful of ``requires_grad`` flags), so it is ours.
The artifact is the whole model, since the trained blocks are ordinary weights of it. Where the
output head shares its weights with the input embeddings (GPT-2, many small models), training
the head trains the embeddings too; the count in summary.json says so, and the log warns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.methods.base import Method, TrainingPlan
from tunelab.models.heads import classification_head

if TYPE_CHECKING:
    from torch import nn


log = logging.getLogger("tunelab")


class LastLayersOptions(MethodOptions):
    name: Literal["last_layers"] = "last_layers"
    layers: int = Field(2, gt=0, description="how many of the top transformer blocks train")


def find_transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's stack of transformer blocks: its longest ``ModuleList`` of identical modules."""
    from torch import nn

    best: nn.ModuleList | None = None
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            same_kind = len({type(block) for block in module}) == 1
            if same_kind and (best is None or len(module) > len(best)):
                best = module
    if best is None:
        raise UserError(f"cannot find the transformer blocks of {type(model).__name__} for last_layers")
    return best


def find_final_norm(model: nn.Module, blocks: nn.Module) -> nn.Module | None:
    """The normalisation applied after the last block (``model.norm``, ``transformer.ln_f``)."""
    backbone = getattr(model, "base_model", model)
    for name in ("norm", "ln_f", "final_layer_norm", "final_layernorm"):
        for owner in (backbone, getattr(backbone, "model", None), getattr(backbone, "transformer", None)):
            module = getattr(owner, name, None) if owner is not None else None
            if module is not None:
                return module
    return None


class LastLayers(Method):
    recommended = {"causal_lm": {"lr": 5e-4}, "classification": {"lr": 5e-4}}
    name = "last_layers"
    options_type = LastLayersOptions
    summary = "train only the top N blocks and the output head"
    trains = "top N blocks, final norm, output head (or classification head)"
    can_merge = True

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        assert isinstance(options, LastLayersOptions)
        blocks = find_transformer_blocks(model)
        if options.layers > len(blocks):
            raise UserError(f"method.layers={options.layers} but the model has only {len(blocks)} blocks")
        model.requires_grad_(False)
        for block in blocks[len(blocks) - options.layers :]:
            block.requires_grad_(True)
        norm = find_final_norm(model, blocks)
        if norm is not None:
            norm.requires_grad_(True)
        for module in classification_head(model).values():
            module.requires_grad_(True)
        head = model.get_output_embeddings()
        if head is not None:
            head.requires_grad_(True)
            embeddings = model.get_input_embeddings()
            if embeddings is not None and embeddings.weight is head.weight:
                log.warning("last_layers: the output head is tied to the input embeddings, which train with it")
        return model

    def merge(self, model: nn.Module, directory: Path) -> nn.Module:
        return model
