"""PEFT's own registry of tuners, read for ``method.name=peft``: which ``method.type`` names exist,
each one's options, what tunelab fills in where the user gives nothing, and which types belong to
another tunelab method.

PEFT is the source of truth and nothing here re-implements a tuner: the types are the keys of
``peft.mapping.PEFT_TYPE_TO_CONFIG_MAPPING`` (filled by every tuner's ``register_peft_method``), a
type's options are the fields of its config dataclass with their annotations, and ``tuner_config``
builds that dataclass. A new tuner in a PEFT release is a new ``method.type`` without a line here.
What is ours: the two small tables below (``TYPE_DEFAULTS``, ``OTHER_METHODS``) and one-line errors.

Reading the registry imports PEFT (and so torch): a few seconds, paid only when a config names
``method.name=peft``, since PEFT's config classes are the only place the options are written down.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from typing import TYPE_CHECKING, Any

from tunelab.config.schema import MethodOptionError
from tunelab.errors import first_line

if TYPE_CHECKING:
    from peft import PeftConfig

# The fields every PeftConfig has that tunelab sets itself, and where from.
SET_BY_TUNELAB = {
    "task_type": "tunelab sets it from task (causal_lm or classification)",
    "peft_type": "it is method.type",
    "base_model_name_or_path": "tunelab records the run's model",
    "revision": "tunelab records the run's model",
    "inference_mode": "tunelab trains the adapter and loads it for inference itself",
    "auto_mapping": "tunelab sets it",
    "peft_version": "PEFT records its own version",
}

# What tunelab gives a type where the user sets nothing; PEFT's own defaults for everything else.
# Every type that adapts linear layers gets "all-linear" (every linear or Conv1D layer but the output
# head), as lora does: PEFT's per-architecture defaults adapt q_proj and v_proj only, and have no
# entry at all for many architectures. The exceptions keep PEFT's per-architecture choice, because
# their layers are not the linear projections: IA3 must know which of its targets are feed-forward,
# LN tuning trains the norms, trainable tokens the embedding. On the tiny test models (64 wide) and
# every usual width, PEFT's other defaults fit as they are: BOFT's block size 4 and OFT's 32 divide
# the layer widths, FourierFT's 1000 frequencies are fewer than any layer's entries, and VeRA's
# shared projections are sized to the largest adapted layer.
DEFAULT_TARGETS = "all-linear"
TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "ia3": {"target_modules": None, "feedforward_modules": None},
    "ln_tuning": {"target_modules": None},
    "trainable_tokens": {"target_modules": None},
}

# The train settings a type starts from where the user sets none (see Method.recommended): LoRA's
# for every type unless named here. IA3 trains one scaling vector per layer, which moves slowly.
DEFAULT_RECOMMENDED = {"causal_lm": {"lr": 1e-3}, "classification": {"lr": 2e-3}}
RECOMMENDED: dict[str, dict[str, dict[str, float]]] = {
    "ia3": {"causal_lm": {"lr": 1e-2}, "classification": {"lr": 1e-2}},
}

# Types another tunelab method trains, with what that method adds: method peft refuses them in one line.
OTHER_METHODS = {
    "prompt_tuning": ("prompt", "its virtual tokens' logits are aligned to the labels there"),
    "prefix_tuning": ("prefix", "it keeps packed examples apart there"),
    "p_tuning": ("ptuning", "its virtual tokens' logits are aligned to the labels there"),
    "multitask_prompt_tuning": ("multitask_prompt", "it reads each example's task from the data there"),
    "adaption_prompt": ("llama_adapter", "it checks the architecture and layer count there"),
    "adalora": ("adalora", "its rank allocator runs after every optimizer step there"),
}


@functools.cache
def config_classes() -> dict[str, type[PeftConfig]]:
    """Every PEFT type by its ``method.type`` name (``loha``, ``p_tuning``), with its config class."""
    import peft  # noqa: F401 - importing PEFT registers every tuner
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {str(kind.value).lower(): config for kind, config in sorted(PEFT_TYPE_TO_CONFIG_MAPPING.items())}


def refusal(kind: str) -> str | None:
    """Why method peft does not train ``kind`` and what does, or None where it does."""
    from peft.config import PromptLearningConfig

    if kind in OTHER_METHODS:
        method, why = OTHER_METHODS[kind]
        return f"{kind} is trained by method.name={method} ({why}), not by method peft"
    config = config_classes()[kind]
    if issubclass(config, PromptLearningConfig):
        return (
            f"{kind} is prompt learning, which method peft does not train (its virtual tokens need the logit "
            "alignment of tunelab's prompt methods: prompt, prefix, ptuning, multitask_prompt)"
        )
    if "target_modules" not in _fields(config):
        return f"{kind} adapts no layers of its own (it combines adapters trained before): method peft cannot train it"
    return None


def trained_types() -> list[str]:
    """The types method peft trains: PEFT's registry less the refused ones."""
    return [kind for kind in config_classes() if refusal(kind) is None]


def resolve_type(name: object) -> str:
    """``method.type`` as PEFT's registry names it (case and ``-`` forgiven); raises MethodOptionError."""
    kind = str(name).strip().lower().replace("-", "_")
    if kind not in config_classes():
        raise MethodOptionError("type", f"unknown PEFT type '{name}'; known: {', '.join(trained_types())}")
    why = refusal(kind)
    if why is not None:
        raise MethodOptionError("type", why)
    return kind


def _fields(config: type[PeftConfig]) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(config)}


def option_names(kind: str) -> list[str]:
    """The options of a type: its config class's fields, less those tunelab sets."""
    return sorted(name for name in _fields(config_classes()[kind]) if name not in SET_BY_TUNELAB)


def default_options(kind: str) -> dict[str, Any]:
    """What tunelab fills in for ``kind`` where the user gives nothing (see TYPE_DEFAULTS)."""
    if kind in TYPE_DEFAULTS:
        return dict(TYPE_DEFAULTS[kind])
    return {"target_modules": DEFAULT_TARGETS} if "target_modules" in _fields(config_classes()[kind]) else {}


@functools.cache
def _annotations(kind: str) -> dict[str, Any]:
    return typing.get_type_hints(config_classes()[kind])


def _check_value(kind: str, key: str, value: Any) -> None:
    """The value against the field's annotation (as pydantic reads it, lax: 8 fits a float)."""
    from pydantic import TypeAdapter, ValidationError

    annotation = _annotations(kind).get(key)
    if annotation is None:
        return
    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # noqa: BLE001 - an annotation pydantic cannot read is left to PEFT to check
        return
    try:
        adapter.validate_python(value)
    except ValidationError as error:
        raise MethodOptionError(key, f"{error.errors()[0]['msg']} (got {value!r})") from None


def resolved_options(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options for ``kind``: the user's, checked against PEFT's config class, over tunelab's defaults."""
    known = option_names(kind)
    for key, value in given.items():
        if key in SET_BY_TUNELAB:
            raise MethodOptionError(key, f"not an option: {SET_BY_TUNELAB[key]}")
        if key not in known:
            raise MethodOptionError(key, f"{kind} has no option '{key}'; its options: {', '.join(known)}")
        _check_value(kind, key, value)
    options = {**default_options(kind), **given}
    try:  # PEFT's own checks of the values together (BOFT: a block size or a block count, not both)
        tuner_config(kind, copy.deepcopy(options), "CAUSAL_LM")
    except (ValueError, TypeError) as error:
        named = [key for key in given if key in str(error)]
        raise MethodOptionError(named[0] if named else "type", f"{kind}: {first_line(error)}") from None
    return options


def tuner_config(kind: str, options: dict[str, Any], task_type: str) -> PeftConfig:
    """PEFT's config for ``kind`` with ``options``; PEFT's own errors pass through."""
    return config_classes()[kind](task_type=task_type, **options)


def recommended_train(kind: str, task: str) -> dict[str, float]:
    return dict(RECOMMENDED.get(kind, DEFAULT_RECOMMENDED).get(task, {}))
