"""``adapter``: bottleneck adapters inside every transformer block (Houlsby / Pfeiffer); ours.

Each adapter is ``x + up(act(down(x)))``: a down-projection to ``hidden_size // reduction_factor``,
an activation, an up-projection back, and a residual. ``variant: houlsby`` puts one after the
attention block and one after the feed-forward block of every layer (Houlsby et al. 2019,
"Parameter-Efficient Transfer Learning for NLP"); ``pfeiffer`` only the one after the feed-forward
block (Pfeiffer et al. 2021, "AdapterFusion"), at half the parameters. The up-projection starts at
zero (weights and bias), so the adapted model's output at step 0 is exactly the base model's (the
trick of LoRA's zero ``B``; Houlsby's near-identity initialisation only approximates it).

No maintained library does this for transformers 5 (the ``adapters`` package pins transformers 4,
and PEFT has no sequential bottleneck adapter), so it is written here. Adapters are attached with
forward hooks on the modules whose outputs they rewrite, which leaves the base model's code,
parameter names and KV cache untouched. Each block owns its adapters as a ``bottleneck_adapters``
submodule, so they move with ``.to()``, count in ``parameters()`` and land in checkpoints. Where
the hooks sit is a table per architecture (``ADAPTER_SITES``); any other model is refused.

The artifact is the adapter weights alone (``adapter_model.safetensors``, keys numbered by block,
so they fit the same backbone under any head) and ``bottleneck_adapter_config.json``. It cannot be
merged: the activation between the projections is not linear, so nothing folds into the base.

Like the other method modules, this one imports torch only when a model is built, so that a
config is validated before anything heavy loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.methods.base import Method
from tunelab.methods.last_layers import find_transformer_blocks
from tunelab.methods.peft_adapter import HALF_PRECISION
from tunelab.models.heads import classification_head

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunelab.methods.base import TrainingPlan
    from tunelab.models.loading import ClassifierHead

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "bottleneck_adapter_config.json"
HEAD_PREFIX = "head."  # a classifier's head weights, saved beside the adapters
BLOCK_ATTRIBUTE = "bottleneck_adapters"  # the submodule of each block that holds its adapters

Variant = Literal["houlsby", "pfeiffer"]
Activation = Literal["relu", "gelu", "silu", "tanh"]
ACTIVATIONS: dict[str, str] = {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU", "tanh": "Tanh"}  # torch.nn classes
# Where each variant puts adapters in a block, in the order the block runs them.
POSITIONS: dict[str, tuple[str, ...]] = {"houlsby": ("attention", "feed_forward"), "pfeiffer": ("feed_forward",)}


@dataclass(frozen=True)
class AdapterSites:
    """The submodules of one block (dotted paths) whose outputs the adapters rewrite.

    Each is a sublayer's contribution before it joins the residual stream (in post-norm BERT:
    before dropout and ``LayerNorm(x + residual)``), which is where Houlsby et al. put adapters.
    """

    attention: str
    feed_forward: str


_DECODER = AdapterSites(attention="self_attn", feed_forward="mlp")  # self_attn returns (output, weights)
_BERT = AdapterSites(attention="attention.output.dense", feed_forward="output.dense")
ADAPTER_SITES: dict[str, AdapterSites] = {
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
    "gpt2": AdapterSites(attention="attn", feed_forward="mlp"),  # attn returns (output, weights)
    "bert": _BERT,
    "roberta": _BERT,
}


class AdapterOptions(MethodOptions):
    name: Literal["adapter"] = "adapter"
    variant: Variant = Field(
        "houlsby", description="houlsby (after attention and feed-forward) | pfeiffer (after feed-forward only)"
    )
    reduction_factor: int = Field(16, gt=0, description="bottleneck size = hidden_size // reduction_factor")
    activation: Activation = Field("relu", description="relu | gelu | silu | tanh, between the projections")


def build_bottleneck(hidden_size: int, bottleneck_size: int, activation: str) -> nn.Sequential:
    """``up(act(down(x)))``; ``up`` starts at zero, so ``x + bottleneck(x)`` starts as ``x``."""
    from collections import OrderedDict

    from torch import nn

    bottleneck = nn.Sequential(
        OrderedDict(
            down=nn.Linear(hidden_size, bottleneck_size),
            activation=getattr(nn, ACTIVATIONS[activation])(),
            up=nn.Linear(bottleneck_size, hidden_size),
        )
    )
    nn.init.zeros_(bottleneck.up.weight)
    nn.init.zeros_(bottleneck.up.bias)
    return bottleneck


class AdapterHook:
    """Forward hook that turns a module's output ``x`` into ``x + bottleneck(x)``.

    Where the output is a tuple (attention: output, weights) only element 0 changes. An object
    rather than a closure, so ``copy.deepcopy(model)`` hooks the copy to the copy's bottleneck.
    """

    def __init__(self, bottleneck: nn.Sequential) -> None:
        self.bottleneck = bottleneck

    def adapt(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # The adapter keeps its own dtype (fp32 on a bf16 / fp16 base); the stream keeps the base's.
        delta = self.bottleneck(hidden_states.to(self.bottleneck.down.weight.dtype))
        return hidden_states + delta.to(hidden_states.dtype)

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (self.adapt(output[0]), *output[1:])
        return self.adapt(output)


def adapter_sites(model: nn.Module) -> AdapterSites:
    """Where adapters go in ``model``'s blocks, or a ``UserError`` naming the supported models."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ADAPTER_SITES:
        supported = ", ".join(sorted(ADAPTER_SITES))
        raise UserError(
            f"method adapter: architecture '{model_type or type(model).__name__}' is not supported "
            f"(supported: {supported})"
        )
    return ADAPTER_SITES[model_type]


def bottleneck_shape(model: nn.Module, reduction_factor: int) -> tuple[int, int]:
    """(hidden size, bottleneck size) for ``model``."""
    hidden_size = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(hidden_size, int):
        raise UserError(f"method adapter: {type(model).__name__} has no config.hidden_size")
    bottleneck_size = hidden_size // reduction_factor
    if bottleneck_size < 1:
        raise UserError(
            f"method.reduction_factor={reduction_factor} leaves no bottleneck for hidden size {hidden_size}; "
            f"use {hidden_size} or less"
        )
    return hidden_size, bottleneck_size


def add_bottleneck_adapters(model: nn.Module, options: AdapterOptions) -> nn.ModuleList:
    """Attach fresh adapters to every block of ``model`` in place; returns them (see ``find_bottleneck_adapters``).

    The adapters' parameters have ``requires_grad`` set; nothing else about the model changes.
    """
    from torch import nn

    sites = adapter_sites(model)
    hidden_size, bottleneck_size = bottleneck_shape(model, options.reduction_factor)
    blocks = find_transformer_blocks(model)
    if any(hasattr(block, BLOCK_ATTRIBUTE) for block in blocks):
        raise UserError(f"method adapter: {type(model).__name__} already has bottleneck adapters")
    for index, block in enumerate(blocks):
        adapters = nn.ModuleDict()
        adapters.options = options  # what save_artifact records; a plain attribute, not a weight
        for position in POSITIONS[options.variant]:
            path = getattr(sites, position)
            try:
                target = block.get_submodule(path)
            except AttributeError:
                raise UserError(f"method adapter: block {index} of {type(model).__name__} has no '{path}'") from None
            anchor = next(target.parameters(), None)
            bottleneck = build_bottleneck(hidden_size, bottleneck_size, options.activation)
            adapters[position] = bottleneck.to(anchor.device) if anchor is not None else bottleneck
            target.register_forward_hook(AdapterHook(adapters[position]))
        block.add_module(BLOCK_ATTRIBUTE, adapters)
    return find_bottleneck_adapters(model)


def find_bottleneck_adapters(model: nn.Module) -> nn.ModuleList:
    """Every block's adapters, bottom block first; state dict keys are ``{block}.{position}.{down|up}.*``."""
    from torch import nn

    found = [getattr(block, BLOCK_ATTRIBUTE, None) for block in find_transformer_blocks(model)]
    if not all(isinstance(adapters, nn.ModuleDict) for adapters in found):
        raise UserError(f"method adapter: {type(model).__name__} has no bottleneck adapters")
    return nn.ModuleList(found)


def read_adapter_options(directory: Path) -> AdapterOptions:
    """The options a saved artifact was built with, from its ``bottleneck_adapter_config.json``."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        return AdapterOptions(
            variant=config["variant"], reduction_factor=config["reduction_factor"], activation=config["activation"]
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as error:
        detail = " ".join(str(error).split())
        raise UserError(f"{path}: not a bottleneck adapter config ({type(error).__name__}: {detail})") from None


class BottleneckAdapter(Method):
    recommended = {"causal_lm": {"lr": 1e-3}, "classification": {"lr": 2e-3}}
    name = "adapter"
    options_type = AdapterOptions
    summary = "bottleneck adapters after attention and/or feed-forward (Houlsby / Pfeiffer)"
    trains = "down- and up-projection of one or two adapters per block"
    saves_adapter_only = True
    can_merge = False

    def load_base(self, reference: str, precision: str, head: ClassifierHead | None = None) -> nn.Module:
        """The frozen base in the run's precision (bf16 / fp16 halve its memory); adapters stay fp32."""
        import torch

        from tunelab.methods.loading import load_model

        dtype = getattr(torch, HALF_PRECISION.get(precision, "float32"))
        return load_model(reference, dtype=dtype, merge_adapters=True, head=head)

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        assert isinstance(options, AdapterOptions)
        model.requires_grad_(False)
        add_bottleneck_adapters(model, options)
        for module in classification_head(model).values():  # a classifier's fresh head trains too
            module.requires_grad_(True)
        return model

    def save_artifact(self, model: nn.Module, directory: Path, base_reference: str) -> None:
        from safetensors.torch import save_file

        adapters = find_bottleneck_adapters(model)
        weights = {key: tensor.detach().contiguous().cpu() for key, tensor in adapters.state_dict().items()}
        for name, module in classification_head(model).items():
            for key, tensor in module.state_dict().items():
                weights[f"{HEAD_PREFIX}{name}.{key}"] = tensor.detach().contiguous().cpu()
        save_file(weights, Path(directory) / WEIGHTS_FILE, metadata={"format": "pt"})
        options: AdapterOptions = adapters[0].options
        config = {
            "variant": options.variant,
            "reduction_factor": options.reduction_factor,
            "activation": options.activation,
            "base_model_name_or_path": base_reference,
        }
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def load_artifact(self, base_model: nn.Module, directory: Path) -> nn.Module:
        from safetensors.torch import load_file

        weights_path = Path(directory) / WEIGHTS_FILE
        options = read_adapter_options(directory)
        if not weights_path.is_file():
            raise UserError(f"{weights_path}: file not found")
        adapters = add_bottleneck_adapters(base_model, options)
        weights = load_file(weights_path)
        head_weights = {key[len(HEAD_PREFIX) :]: value for key, value in weights.items() if key.startswith(HEAD_PREFIX)}
        try:
            adapters.load_state_dict({k: v for k, v in weights.items() if not k.startswith(HEAD_PREFIX)}, strict=True)
            # a classifier gets its trained head back; the same backbone under another head keeps its own
            restore_head = bool(head_weights) and bool(classification_head(base_model))
            if restore_head and base_model.load_state_dict(head_weights, strict=False).unexpected_keys:
                raise RuntimeError(f"classifier head weights do not fit: {sorted(head_weights)[:3]}")
        except RuntimeError as error:
            detail = " ".join(str(error).split())
            raise UserError(f"{weights_path} does not fit {type(base_model).__name__}: {detail}") from None
        base_model.requires_grad_(False)
        return base_model
