"""What the server holds in memory: every served name, and the model (and adapter) behind it.

A name is a run folder's name, a model reference as given (``smollm2``, a hub id, a folder's
name), or whatever ``name=path`` says. Loading follows ``tunelab generate`` (same base, same
precision, same adapter weights, same tokenizer and chat template), with one difference that is
the point of a server: runs that trained a LoRA / DoRA, IA3 or AdaLoRA adapter on the same base
(and precision) share one copy of that base. PEFT holds their adapters side by side
(``PeftModel.load_adapter``) and the batch that runs activates its own (``set_adapter``); the
base served under its own name runs with the adapters switched off (``disable_adapter``).

Everything else loads a model of its own: full and last_layers runs (their weights are the
model), runs on another base or of another PEFT type (PEFT keeps one adapter type per wrapped
model), qlora runs (a 4-bit base), prompt-learning runs (prefix, prompt, ptuning: their virtual
tokens enter through PEFT's generation hooks, and we do not rely on PEFT switching those between
adapters of one model), llama_adapter runs (PEFT's adaption prompt is not a LoRA-style tuner
either) and bottleneck-adapter runs (our own method, not PEFT). A multi-task prompt run is refused: the OpenAI API
has no field for its task id. Classification runs keep no model here: each ``/v1/classify`` call
goes through ``predict_labels``, the function behind ``tunelab predict``, which loads the run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.data.chat_template import ensure_chat_template, render
from tunelab.data.tokenize import encode_prompt
from tunelab.errors import UserError
from tunelab.models.resolve import check_model_reference
from tunelab.run_files import is_run_folder, read_run_config, run_task

if TYPE_CHECKING:
    from torch import nn

# PEFT adapter types that several runs may load side by side onto one base (adapter_config.json's peft_type)
SHAREABLE_PEFT_TYPES = frozenset({"LORA", "IA3", "ADALORA"})
REFUSED_METHODS = {"multitask_prompt": "it needs a task id per request, which the OpenAI API has no field for"}


@dataclass(frozen=True)
class ServedSpec:
    """One ``MODEL_OR_RUN`` argument: the name clients use and the reference it stands for."""

    name: str
    reference: str

    @classmethod
    def parse(cls, argument: str) -> ServedSpec:
        """``name=path`` or a bare reference, named by its folder (``runs/lora-a`` -> ``lora-a``)."""
        name, separator, reference = argument.partition("=")
        if not separator or Path(argument).exists():
            reference = argument
            name = Path(argument).name if Path(argument).expanduser().exists() else argument
        if not name or not reference:
            raise UserError(f"serve: '{argument}' should be a model or run folder, or name=path")
        return cls(name, reference)


@dataclass(eq=False)
class LoadedModel:
    """One model in memory, with the PEFT adapters loaded onto it by served name (none for most)."""

    module: nn.Module
    adapters: dict[str, str] = field(default_factory=dict)  # served name -> PEFT adapter name

    @property
    def device(self) -> Any:
        return next(self.module.parameters()).device


@dataclass(eq=False)
class ServedModel:
    """A name clients can ask for: a language model to generate with, or a classification run."""

    name: str
    reference: str
    task: str  # "causal_lm" or "classification"
    loaded: LoadedModel | None = None  # None for classification runs
    tokenizer: Any = None
    adapter: str | None = None  # the PEFT adapter to activate; None: the model as loaded
    adapters_off: bool = False  # the shared base itself, served with its adapters switched off
    stop_ids: list[int] = field(default_factory=list)
    pad_id: int = 0
    context_length: int | None = None

    @property
    def generates(self) -> bool:
        return self.task != "classification"

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        """This name's weights for the duration of one batch (call from the one worker thread)."""
        assert self.loaded is not None
        if self.adapters_off:
            with self.loaded.module.disable_adapter():
                yield
            return
        if self.adapter is not None:
            self.loaded.module.set_adapter(self.adapter)
        yield

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` through this run's chat template, ready for the reply."""
        return encode_prompt(self.tokenizer, render(self.tokenizer, messages, add_generation_prompt=True))

    def text_prompt_ids(self, prompt: str) -> list[int]:
        return encode_prompt(self.tokenizer, prompt)


@dataclass(frozen=True)
class _AdapterRun:
    """A run whose adapter can share its base with others: the key says which base copy it needs."""

    spec: ServedSpec
    base_key: tuple[str, str, str]  # (base reference, precision, PEFT type)
    base_reference: str
    precision: str


def _normalized(reference: str) -> str:
    folder = Path(reference).expanduser()
    return str(folder.resolve()) if folder.exists() else reference


def _shareable_adapter(spec: ServedSpec) -> _AdapterRun | None:
    """How ``spec`` can join a shared base, or None where it loads a model of its own."""
    from tunelab.methods.peft_adapter import PeftAdapterMethod
    from tunelab.methods.registry import get_method

    if not is_run_folder(spec.reference):
        return None
    run_config = read_run_config(spec.reference)
    method = get_method(run_config["method"]["name"])
    adapter_config = Path(spec.reference) / "adapter_config.json"
    # qlora overrides load_base (a 4-bit base): only the plain PEFT base is shared
    if not isinstance(method, PeftAdapterMethod) or type(method).load_base is not PeftAdapterMethod.load_base:
        return None
    if not adapter_config.is_file():
        return None
    peft_type = json.loads(adapter_config.read_text(encoding="utf-8")).get("peft_type")
    if peft_type not in SHAREABLE_PEFT_TYPES:
        return None
    precision = str(run_config.get("train", {}).get("precision", "fp32"))
    base = str(run_config["model"])
    return _AdapterRun(spec, (_normalized(base), precision, peft_type), base, precision)


def _check_servable(spec: ServedSpec) -> None:
    check_model_reference(spec.reference)
    if is_run_folder(spec.reference):
        method = read_run_config(spec.reference)["method"]["name"]
        if method in REFUSED_METHODS:
            raise UserError(
                f"serve: {spec.reference} is a {method} run, which cannot be served: {REFUSED_METHODS[method]}"
            )


def _language_model(spec: ServedSpec, loaded: LoadedModel, **kwargs: Any) -> ServedModel:
    from tunelab.inference.generate import padding_token_id, stop_token_ids
    from tunelab.models.loading import load_tokenizer, model_context_length

    tokenizer = load_tokenizer(spec.reference)
    ensure_chat_template(tokenizer)  # as tunelab generate does before rendering messages
    stops = stop_token_ids(tokenizer, loaded.module)
    return ServedModel(
        name=spec.name,
        reference=spec.reference,
        task="causal_lm",
        loaded=loaded,
        tokenizer=tokenizer,
        stop_ids=stops,
        pad_id=padding_token_id(tokenizer, stops),
        context_length=model_context_length(loaded.module),
        **kwargs,
    )


def _load_shared_base(runs: list[_AdapterRun], device: str) -> LoadedModel:
    """One base with every run's adapter loaded onto it, named ``adapter_0``, ``adapter_1``, ...

    PEFT's own adapter names, not the served names: they become ``ModuleDict`` keys, where a dot
    (``run.v2``) is not allowed."""
    from peft import PeftModel

    from tunelab.methods.peft_adapter import PeftAdapterMethod
    from tunelab.methods.registry import get_method

    first = runs[0]
    method = get_method(read_run_config(first.spec.reference)["method"]["name"])
    assert isinstance(method, PeftAdapterMethod)  # shared_base_key let only adapter runs share
    base = method.load_base(first.base_reference, first.precision)
    module = PeftModel.from_pretrained(base, first.spec.reference, adapter_name="adapter_0")
    for index, run in enumerate(runs[1:], start=1):
        module.load_adapter(run.spec.reference, adapter_name=f"adapter_{index}")
    adapters = {run.spec.name: f"adapter_{index}" for index, run in enumerate(runs)}
    return LoadedModel(module.to(device).eval(), adapters)


def load_served_models(arguments: Sequence[str], device: str | None = None) -> dict[str, ServedModel]:
    """Every served name, loaded: ``arguments`` are ``MODEL_OR_RUN`` / ``name=path`` strings."""
    from tunelab.inference.generate import best_device
    from tunelab.methods.loading import load_causal_lm

    device = device or best_device()
    specs = [ServedSpec.parse(argument) for argument in arguments]
    if not specs:
        raise UserError("serve: give at least one model or run folder")
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise UserError(f"serve: two models are named '{spec.name}'; name them with name=path")
        seen.add(spec.name)
        _check_servable(spec)

    served: dict[str, ServedModel] = {}
    groups: dict[tuple[str, str, str], list[_AdapterRun]] = {}
    for spec in specs:
        if run_task(spec.reference) == "classification":
            from tunelab.inference.predict import classification_labels

            classification_labels(Path(spec.reference))  # a clear error now rather than per request
            served[spec.name] = ServedModel(spec.name, spec.reference, "classification")
            continue
        adapter_run = _shareable_adapter(spec)
        if adapter_run is not None:
            groups.setdefault(adapter_run.base_key, []).append(adapter_run)

    shared_bases: dict[str, LoadedModel] = {}  # normalized base reference -> a full-precision shared base
    for key, runs in groups.items():
        loaded = _load_shared_base(runs, device)
        for run in runs:
            served[run.spec.name] = _language_model(run.spec, loaded, adapter=loaded.adapters[run.spec.name])
        if key[1] == "fp32":
            shared_bases.setdefault(key[0], loaded)

    for spec in specs:
        if spec.name in served:
            continue
        base = shared_bases.get(_normalized(spec.reference)) if not is_run_folder(spec.reference) else None
        if base is not None:  # the base of served adapters: the same weights, adapters switched off
            served[spec.name] = _language_model(spec, base, adapters_off=True)
            continue
        module = load_causal_lm(spec.reference).to(device).eval()
        served[spec.name] = _language_model(spec, LoadedModel(module))
    return {spec.name: served[spec.name] for spec in specs}
