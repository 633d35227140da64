"""Prompt-learning methods through PEFT: ``prefix``, ``prompt``, ``ptuning``, ``multitask_prompt``.

All four leave the model's weights alone and learn a handful of virtual tokens: key/value
prefixes in every layer (prefix tuning), embeddings prepended to the input (prompt tuning), the
same produced by a small prompt encoder (P-tuning), or a shared prompt modulated per task
(multi-task prompt tuning). None can be merged, and none may be packed: their virtual tokens
(or prefix cache) would be shared across packed examples, and PEFT drops ``position_ids``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.methods.base import TrainingPlan, peft_task_type
from tunelab.methods.peft_adapter import PeftAdapterMethod

if TYPE_CHECKING:
    import torch
    from peft import PeftConfig


class PromptLearningMethod(PeftAdapterMethod):
    supports_packing = False
    can_merge = False
    prepends_tokens = True  # prompt / P-tuning / multi-task: logits include the virtual tokens

    def extra_context_tokens(self, options: MethodOptions) -> int:
        return int(options.virtual_tokens)  # type: ignore[attr-defined]  # every prompt method's options have it

    def align_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.prepends_tokens and logits.shape[1] > labels.shape[1]:
            return logits[:, logits.shape[1] - labels.shape[1] :, :]
        return logits


class PrefixOptions(MethodOptions):
    name: Literal["prefix"] = "prefix"
    virtual_tokens: int = Field(16, gt=0, description="prefix length in every layer")
    projection: bool = Field(False, description="reparameterise the prefix through an MLP while training")
    projection_hidden_size: int = Field(128, gt=0, description="hidden size of that MLP")


class PrefixTuning(PromptLearningMethod):
    recommended = {"causal_lm": {"lr": 1e-2}, "classification": {"lr": 1e-2}}
    name = "prefix"
    options_type = PrefixOptions
    summary = "learned key/value prefixes in every layer (PEFT)"
    trains = "key/value prefix vectors for every layer"
    prepends_tokens = False  # the prefix lives in the KV cache; logits keep the input's length

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import PrefixTuningConfig

        assert isinstance(options, PrefixOptions)
        return PrefixTuningConfig(
            task_type=peft_task_type(plan),
            num_virtual_tokens=options.virtual_tokens,
            prefix_projection=options.projection,
            encoder_hidden_size=options.projection_hidden_size,
        )


class PromptOptions(MethodOptions):
    name: Literal["prompt"] = "prompt"
    virtual_tokens: int = Field(16, gt=0, description="learned tokens prepended to the input")
    init_text: str | None = Field(None, description="initialise from this text's embeddings (null: random)")


class PromptTuning(PromptLearningMethod):
    recommended = {"causal_lm": {"lr": 3e-2}, "classification": {"lr": 3e-2}}
    name = "prompt"
    options_type = PromptOptions
    summary = "learned virtual token embeddings prepended to the input (PEFT)"
    trains = "virtual token embeddings"

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import PromptTuningConfig, PromptTuningInit

        assert isinstance(options, PromptOptions)
        if options.init_text:
            return PromptTuningConfig(
                task_type=peft_task_type(plan),
                num_virtual_tokens=options.virtual_tokens,
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text=options.init_text,
                tokenizer_name_or_path=plan.model_reference,
            )
        return PromptTuningConfig(
            task_type=peft_task_type(plan),
            num_virtual_tokens=options.virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM,
        )


class PtuningOptions(MethodOptions):
    name: Literal["ptuning"] = "ptuning"
    virtual_tokens: int = Field(16, gt=0, description="virtual tokens produced by the encoder")
    encoder: Literal["mlp", "lstm"] = Field("mlp", description="mlp | lstm prompt encoder")
    encoder_hidden_size: int = Field(128, gt=0, description="hidden size of the prompt encoder")


class Ptuning(PromptLearningMethod):
    recommended = {"causal_lm": {"lr": 1e-2}, "classification": {"lr": 1e-2}}
    name = "ptuning"
    options_type = PtuningOptions
    summary = "virtual tokens produced by a trained prompt encoder, MLP or LSTM (PEFT)"
    trains = "the prompt encoder and its input embeddings"

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import PromptEncoderConfig, PromptEncoderReparameterizationType

        assert isinstance(options, PtuningOptions)
        kind = {"mlp": PromptEncoderReparameterizationType.MLP, "lstm": PromptEncoderReparameterizationType.LSTM}
        return PromptEncoderConfig(
            task_type=peft_task_type(plan),
            num_virtual_tokens=options.virtual_tokens,
            encoder_reparameterization_type=kind[options.encoder],
            encoder_hidden_size=options.encoder_hidden_size,
        )


class MultitaskPromptOptions(MethodOptions):
    name: Literal["multitask_prompt"] = "multitask_prompt"
    virtual_tokens: int = Field(16, gt=0, description="length of the shared prompt")
    task_column: str = Field("task", description="data column holding each example's task (id or name)")
    task_rank: int = Field(1, gt=0, description="rank of each task's modulation of the shared prompt")


class MultitaskPromptTuning(PromptLearningMethod):
    recommended = {"causal_lm": {"lr": 3e-2}}
    name = "multitask_prompt"
    options_type = MultitaskPromptOptions
    summary = "a shared prompt modulated per task, the task read from a data column (PEFT)"
    trains = "shared prompt plus low-rank per-task factors"
    tasks = ("causal_lm",)  # PEFT's multi-task prompt needs task ids, which a classification batch lacks

    def task_column(self, options: MethodOptions) -> str | None:
        assert isinstance(options, MultitaskPromptOptions)
        return options.task_column

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import MultitaskPromptTuningConfig, MultitaskPromptTuningInit

        assert isinstance(options, MultitaskPromptOptions)
        return MultitaskPromptTuningConfig(
            task_type=peft_task_type(plan),
            num_virtual_tokens=options.virtual_tokens,
            num_tasks=plan.task_count,
            num_ranks=options.task_rank,
            prompt_tuning_init=MultitaskPromptTuningInit.RANDOM,
        )
