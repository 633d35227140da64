"""The method registry: ``method.name`` -> the strategy that implements it.

A strategy is a ``Method`` (it trains: full, lora, ...) or an ``InContextStrategy`` (it changes
only the prompt: zeroshot, fewshot, rag); callers that need one kind check which they got. Adding a
method means writing its module and one line in ``_builtin_methods``.
"""

from __future__ import annotations

from tunelab.methods.base import Method
from tunelab.methods.in_context import InContextStrategy

Strategy = Method | InContextStrategy
_REGISTRY: dict[str, Strategy] = {}


def _builtin_methods() -> list[Strategy]:
    from tunelab.methods.adalora import AdaLora
    from tunelab.methods.bottleneck_adapter import BottleneckAdapter
    from tunelab.methods.features import FeatureBased
    from tunelab.methods.full import FullFineTuning
    from tunelab.methods.ia3 import Ia3
    from tunelab.methods.in_context import FewShot, Rag, ZeroShot
    from tunelab.methods.last_layers import LastLayers
    from tunelab.methods.llama_adapter import LlamaAdapter
    from tunelab.methods.lora import Dora, Lora
    from tunelab.methods.peft_method import Peft
    from tunelab.methods.prompt_learning import MultitaskPromptTuning, PrefixTuning, PromptTuning, Ptuning
    from tunelab.methods.qlora import Qlora

    return [
        FullFineTuning(),
        LastLayers(),
        Lora(),
        Dora(),
        Qlora(),
        AdaLora(),
        Ia3(),
        Peft(),
        PrefixTuning(),
        PromptTuning(),
        Ptuning(),
        MultitaskPromptTuning(),
        LlamaAdapter(),
        BottleneckAdapter(),
        FeatureBased(),
        ZeroShot(),
        FewShot(),
        Rag(),
    ]


def _ensure_builtins() -> None:
    if not _REGISTRY:
        for method in _builtin_methods():
            _REGISTRY[method.name] = method


def register(method: Strategy) -> None:
    """Add (or replace) a method; the built-in ones stay registered."""
    _ensure_builtins()
    _REGISTRY[method.name] = method


def available_methods() -> dict[str, Strategy]:
    _ensure_builtins()
    return dict(_REGISTRY)


def get_method(name: str) -> Strategy:
    methods = available_methods()
    if name not in methods:
        known = ", ".join(sorted(methods))
        raise ValueError(f"unknown method '{name}' (known: {known})")
    return methods[name]
