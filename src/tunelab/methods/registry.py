"""The method registry: ``method.name`` -> the ``Method`` that implements it.

Adding a method means writing its module and one ``register`` line in ``_builtin_methods``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tunelab.config.schema import MethodOptions
from tunelab.methods.base import Method

_REGISTRY: dict[str, Method] = {}


class MethodOptionError(ValueError):
    """A bad ``method.*`` option; ``key`` is the option's name, ``detail`` what is wrong."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, detail


def _builtin_methods() -> list[Method]:
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


def register(method: Method) -> None:
    """Add (or replace) a method; the built-in ones stay registered."""
    _ensure_builtins()
    _REGISTRY[method.name] = method


def available_methods() -> dict[str, Method]:
    _ensure_builtins()
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    methods = available_methods()
    if name not in methods:
        known = ", ".join(sorted(methods))
        raise ValueError(f"unknown method '{name}' (known: {known})")
    return methods[name]


def parse_method_options(value: Any) -> MethodOptions:
    """Validate the ``method`` config subtree against the options of the method it names."""
    if isinstance(value, MethodOptions):
        value = value.model_dump()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ValueError("method must be a mapping with a 'name' key, e.g. {name: lora, r: 8}")
    value = dict(value)
    value.setdefault("name", MethodOptions.model_fields["name"].default)
    method = get_method(str(value["name"]))
    try:
        return method.options_type.model_validate(value)
    except ValidationError as error:
        first = error.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, MethodOptionError):  # raised by the options' own validator (peft's type check)
            raise cause from None
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            known = ", ".join(method.options_type.model_fields)
            message = f"unknown option for method '{method.name}' (known: {known})"
        elif "input" in first and not isinstance(first["input"], dict):
            message = f"{message} (got {first['input']!r})"
        raise MethodOptionError(where, message) from None
