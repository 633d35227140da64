"""``llama_adapter``: LLaMA-Adapter through PEFT's adaption prompt.

Learned prompts in the top L layers' attention with a zero-initialised gate, so the model's
output at step 0 equals the base model's. Architectures: those PEFT's adaption prompt knows,
which in PEFT 0.21 are Llama, Mistral and GPT-2 (anything else is refused with that list).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.methods.base import TrainingPlan, peft_task_type
from tunelab.methods.peft_adapter import PeftAdapterMethod

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn


class LlamaAdapterOptions(MethodOptions):
    name: Literal["llama_adapter"] = "llama_adapter"
    adapter_len: int = Field(10, gt=0, description="learned prompt tokens per adapted layer")
    adapter_layers: int = Field(2, gt=0, description="how many of the top layers get a prompt")


def supported_architectures() -> list[str]:
    from peft.tuners.adaption_prompt.config import TRANSFORMERS_MODEL_CONFIG

    return sorted(TRANSFORMERS_MODEL_CONFIG)


class LlamaAdapter(PeftAdapterMethod):
    recommended = {"causal_lm": {"lr": 1e-2}}
    name = "llama_adapter"
    options_type = LlamaAdapterOptions
    summary = "zero-gated learned prompts in the top layers (LLaMA-Adapter, PEFT; Llama, Mistral, GPT-2)"
    trains = "prompt tokens and a gate per adapted layer"
    tasks = ("causal_lm",)  # PEFT's adaption prompt has no modules_to_save: a classifier head would not be saved
    supports_packing = False  # the adapter's attention over its prompt ignores packed boundaries
    can_merge = False

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        model_type = getattr(model.config, "model_type", "?")
        if model_type not in supported_architectures():
            raise UserError(f"method llama_adapter supports {', '.join(supported_architectures())}, not {model_type}")
        assert isinstance(options, LlamaAdapterOptions)
        layers = model.config.num_hidden_layers
        if options.adapter_layers > layers:
            raise UserError(f"method.adapter_layers={options.adapter_layers} but the model has only {layers} layers")
        return super().prepare(model, options, plan)

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:
        from peft import AdaptionPromptConfig

        assert isinstance(options, LlamaAdapterOptions)
        return AdaptionPromptConfig(
            task_type=peft_task_type(plan), adapter_len=options.adapter_len, adapter_layers=options.adapter_layers
        )
