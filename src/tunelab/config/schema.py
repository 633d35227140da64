"""The configuration schema: every key ``tunelab train`` accepts, its type and default.

Configuration is data: one tree of pydantic models, loaded from YAML plus dotted overrides. The
``method`` subtree is validated against the options of the method it names, so each method owns its
options; the methods are above this layer, so validation is handed them as a ``MethodCatalog`` in
pydantic's validation context (``tunelab.methods.config_loading`` does that: load configs there).
This module owns the names of the keys; later features and users' configs depend on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MethodOptions(StrictModel):
    """Options common to every method; each method subclasses this with its own."""

    name: str = Field("lora", description="training strategy (see `tunelab methods`)")


class MethodOptionError(ValueError):
    """A bad ``method.*`` option; ``key`` is the option's name, ``detail`` what is wrong."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key, self.detail = key, detail


class MethodSpec(Protocol):
    """What the config needs to know of a method: its options and its recommended train settings."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options_type: ClassVar[type[MethodOptions]]

    def recommended_train(self, task: str, options: MethodOptions | None = None) -> dict[str, float]: ...


MethodCatalog = Mapping[str, MethodSpec]  # method.name -> the method (tunelab.methods.registry.available_methods)
METHODS_CONTEXT = "methods"  # the validation-context key that holds the MethodCatalog


def catalog_of(info: ValidationInfo) -> MethodCatalog:
    """The method catalog handed to this validation; one clear error where there is none."""
    methods = (info.context or {}).get(METHODS_CONTEXT)
    if methods is None:
        raise ValueError(
            "the method options are resolved by the method registry: load configs with "
            "tunelab.load_config or tunelab.methods.config_loading.validate_config"
        )
    return methods


def parse_method_options(value: Any, methods: MethodCatalog) -> MethodOptions:
    """Validate the ``method`` config subtree against the options of the method it names."""
    if isinstance(value, MethodOptions):
        value = value.model_dump()
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ValueError("method must be a mapping with a 'name' key, e.g. {name: lora, r: 8}")
    value = dict(value)
    value.setdefault("name", MethodOptions.model_fields["name"].default)
    name = str(value["name"])
    if name not in methods:
        raise ValueError(f"unknown method '{name}' (known: {', '.join(sorted(methods))})")
    method = methods[name]
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


DataFormat = Literal["auto", "chat", "instruction", "prompt_completion", "text", "classification"]


class DataConfig(StrictModel):
    train: Path | None = Field(None, description="training data file (.jsonl .json .csv .parquet .txt)")
    eval: Path | None = Field(None, description="evaluation data file")
    eval_split: float | None = Field(
        None, gt=0, lt=1, description="hold out this share of train for evaluation (when no data.eval)"
    )
    format: DataFormat = Field(
        "auto", description="auto | chat | instruction | prompt_completion | text | classification (text + label)"
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="map our field names to your columns, e.g. {prompt: question, completion: answer}",
    )
    max_length: int = Field(512, gt=1, description="tokens per example (per packed sequence with packing)")
    overlong: Literal["truncate", "drop"] = Field(
        "truncate", description="what to do with examples longer than max_length"
    )
    packing: bool = Field(False, description="pack several examples per sequence (no cross-attention)")
    blocks: bool = Field(
        False, description="text only: join all text and cut it into max_length blocks (pretraining, no padding)"
    )
    train_on_prompt: bool = Field(False, description="also compute the loss on prompt / user tokens")

    @model_validator(mode="after")
    def _one_eval_source(self) -> DataConfig:
        if self.eval is not None and self.eval_split is not None:
            raise ValueError("give data.eval or data.eval_split, not both")
        if self.blocks and self.format not in ("auto", "text"):
            raise ValueError("data.blocks needs data.format text")
        if self.blocks and self.packing:
            raise ValueError("give data.blocks or data.packing, not both")
        return self


# What an unset train.* key becomes where the method recommends nothing for the task.
FALLBACK_TRAIN = {"lr": 2e-4, "weight_decay": 0.0, "epochs": 1}


class TrainConfig(StrictModel):
    max_steps: int | None = Field(None, gt=0, description="optimizer steps (overrides epochs)")
    max_tokens: int | None = Field(
        None, gt=0, description="stop after this many input tokens (a token budget; wins over max_steps and epochs)"
    )
    epochs: int | None = Field(None, gt=0, description="passes over the training data (null: the method's own, else 1)")
    batch_size: int = Field(8, gt=0, description="examples (or packed sequences) per micro-batch")
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step")
    lr: float | None = Field(
        None, gt=0, description="peak learning rate (null: the method's own for the task; tunelab methods lists them)"
    )
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="cosine | linear | constant")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps with linear warm-up")
    weight_decay: float | None = Field(
        None, ge=0, description="AdamW weight decay, matrices only (null: the method's own, else 0)"
    )
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping norm (null: off)")
    seed: int = Field(0, description="seed for initialisation, data order and dropout")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto (bf16 on a CUDA GPU that computes in it, else fp32; config.yaml records which) | "
        "fp32 | bf16 | fp16 (CUDA only)",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
    chunked_loss: bool = Field(
        True,
        description="language models: output head and loss on the target positions only, in chunks (no full "
        "logits tensor; same loss); false: the plain logits path",
    )
    fused_swiglu: bool = Field(
        True,
        description="Llama, Mistral, Qwen2/3 MLPs: silu(gate) * up as one op that keeps only its inputs for the "
        "backward pass (less activation memory, same gradients); false: transformers' own",
    )
    threads: int | None = Field(
        None, gt=0, description="CPU threads for torch (null: the physical cores, shared among local processes)"
    )
    compile: bool = Field(False, description="torch.compile the model (a warm-up cost, then faster steps)")
    eval_every: int | None = Field(None, gt=0, description="evaluate every N steps (and always at the end)")
    save_every: int | None = Field(None, gt=0, description="checkpoint every N steps")
    keep_checkpoints: int = Field(2, gt=0, description="how many recent checkpoints to keep")
    log_every: int = Field(10, gt=0, description="write a metrics line every N steps")
    resume: bool = Field(False, description="continue from the latest checkpoint in output_dir")
    nan_policy: Literal["stop", "skip_step"] = Field(
        "stop", description="a non-finite loss or gradient: stop the run, or skip_step (leave the update out)"
    )
    nan_max_skips: int = Field(5, gt=0, description="skip_step: stop after this many non-finite steps in a row")
    report_to: list[str] = Field(
        default_factory=list,
        description="experiment trackers that get every metrics line, through accelerate "
        "(tensorboard, mlflow, wandb, ...); metrics.jsonl is written either way",
    )
    report_project: str | None = Field(
        None,
        description="the project / experiment trackers group runs under (default: tunelab; a comparison: its name)",
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker_or_several(cls, value: Any) -> Any:
        """``tensorboard``, ``tensorboard,mlflow`` (as typed on the command line) or a YAML list."""
        return [name.strip() for name in value.split(",") if name.strip()] if isinstance(value, str) else value


class PromptConfig(StrictModel):
    """How an example is put to the model, for every strategy (trained or not)."""

    system: str | None = Field(None, description="system message before every example")
    template: str | None = Field(
        None,
        description="the user message as a template of the example's fields, e.g. 'Classify: {text}' "
        "(default: the data format's own layout)",
    )


class EvalConfig(StrictModel):
    """Scoring the model's generated answers on data.eval (tunelab eval, and train with generate)."""

    generate: bool = Field(False, description="after training, generate answers for data.eval and score them")
    metric: Literal["exact_match", "accuracy", "rouge_l", "json", "perplexity"] | None = Field(
        None, description="exact_match | accuracy | rouge_l | json | perplexity (null: inferred from the references)"
    )
    max_new_tokens: int = Field(128, gt=0, description="longest generated answer")
    batch_size: int = Field(8, gt=0, description="examples generated at once")
    limit: int | None = Field(None, gt=0, description="score only the first N evaluation examples")


class ScratchModelConfig(StrictModel):
    """A new, randomly initialised model to pretrain (``model.init: scratch``)."""

    init: Literal["scratch"] = "scratch"
    architecture: Literal["llama", "gpt2"] = Field("llama", description="llama | gpt2")
    tokenizer: Path = Field(description="tokenizer folder (tunelab tokenizer train)")
    hidden_size: int = Field(128, gt=0, description="width of the model")
    layers: int = Field(4, gt=0, description="transformer blocks")
    heads: int = Field(4, gt=0, description="attention heads")
    intermediate_size: int | None = Field(None, gt=0, description="feed-forward width (null: 4 x hidden_size)")
    max_position: int = Field(512, gt=0, description="longest sequence (context)")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ScratchModelConfig:
        if self.hidden_size % self.heads:
            raise ValueError("hidden_size must be a multiple of heads")
        return self


class TunelabConfig(StrictModel):
    model: str | ScratchModelConfig | None = Field(
        None, description="hub id, local model folder, finished tunelab run folder, or {init: scratch, ...}"
    )
    task: Literal["causal_lm", "classification"] = Field(
        "causal_lm", description="causal_lm (generate text) | classification (a label per text)"
    )
    method: SerializeAsAny[MethodOptions] = Field(
        default_factory=MethodOptions, validate_default=True, description="method.name + options"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    output_dir: Path = Field(Path("runs/latest"), description="the run folder")

    @field_validator("method", mode="before")
    @classmethod
    def _method_from_registry(cls, value: Any, info: ValidationInfo) -> MethodOptions:
        return parse_method_options(value, catalog_of(info))

    @model_validator(mode="after")
    def _data_fits_task(self) -> TunelabConfig:
        classification_data = self.data.format == "classification"
        if self.task == "classification":
            if self.data.format not in ("auto", "classification"):
                raise ValueError("task classification needs data.format classification (text + label)")
            if self.data.packing or self.data.blocks:
                raise ValueError("task classification takes one text per example: no data.packing or data.blocks")
            if isinstance(self.model, ScratchModelConfig):
                raise ValueError("task classification starts from a pretrained model, not model.init: scratch")
        elif classification_data:
            raise ValueError("data.format classification needs task: classification")
        return self

    @model_validator(mode="after")
    def _method_recommendations(self, info: ValidationInfo) -> TunelabConfig:
        """Train settings left unset take the method's own for the task, so that a newcomer who
        names only the method gets a learning rate that works for it (the resolved values are what
        config.yaml records)."""
        recommended = catalog_of(info)[self.method.name].recommended_train(self.task, self.method)
        for key, fallback in FALLBACK_TRAIN.items():
            if getattr(self.train, key) is None:
                setattr(self.train, key, recommended.get(key, fallback))
        return self

    def to_plain(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data (paths as strings)."""
        return self.model_dump(mode="json")
