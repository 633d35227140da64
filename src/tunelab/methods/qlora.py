"""``qlora``: LoRA on a base loaded in 4-bit NF4 with double quantisation (bitsandbytes, PEFT).

The base goes through PEFT's k-bit preparation (norms and embeddings in fp32, input gradients
on). bitsandbytes 0.45+ has a CPU path as well as CUDA. ``merge`` folds the adapter into the
4-bit base dequantised to full precision: the weights the adapter was trained against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.methods.base import TrainingPlan
from tunelab.methods.lora import Lora, LoraOptions
from tunelab.models.resolve import model_location
from tunelab.run_files import is_run_folder, read_run_config

if TYPE_CHECKING:
    from torch import nn

    from tunelab.models.loading import ClassifierHead

COMPUTE_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def head_module_names(reference: str, head: ClassifierHead) -> list[str]:
    """The classification head's module names (``classifier``, ``bert.pooler``; ``score`` for decoders),
    read from the architecture alone: they stay in full precision, because they train whole."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from tunelab.models.heads import classification_head

    config = AutoConfig.from_pretrained(model_location(reference), **head.config_kwargs())
    with init_empty_weights():
        skeleton = AutoModelForSequenceClassification.from_config(config)
    return sorted(classification_head(skeleton))


def unquantized_layers(model: nn.Module) -> list[str]:
    """4-bit layers whose weight bitsandbytes never quantised: layers the checkpoint has no weights
    for, which transformers initialises fresh and leaves as plain parameters; PEFT cannot wrap them."""
    import bitsandbytes

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, bitsandbytes.nn.Linear4bit) and not isinstance(module.weight, bitsandbytes.nn.Params4bit)
    ]


def uses_conv1d(reference: str) -> bool:
    """Whether the model's architecture has GPT-2-style Conv1D layers (read from its config alone)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    with init_empty_weights():  # the architecture without allocating or loading any weight
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_location(reference)))
    return any(isinstance(module, Conv1D) for module in skeleton.modules())


class QloraOptions(LoraOptions):
    name: Literal["qlora"] = "qlora"  # type: ignore[assignment]


class Qlora(Lora):
    name = "qlora"
    options_type = QloraOptions
    summary = "LoRA on a 4-bit NF4 base with double quantisation (bitsandbytes + PEFT)"
    trains = "low-rank A, B matrices; the base stays 4-bit"
    needs_own_base = True

    def load_base(self, reference: str, precision: str, head: ClassifierHead | None = None) -> nn.Module:
        import torch

        from tunelab.methods.loading import load_model

        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise UserError("method qlora needs bitsandbytes: pip install 'tunelab[quant]'") from None
        if is_run_folder(reference) and read_run_config(reference)["method"]["name"] != "full":
            raise UserError(
                f"method qlora quantises a saved model; `tunelab merge` the run {reference} first "
                "and use the merged folder as model"
            )
        compute = getattr(torch, COMPUTE_DTYPE[precision])
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
            # a classification head (and BERT's pooler) trains whole, so it stays in full precision
            llm_int8_skip_modules=head_module_names(reference, head) if head is not None else None,
        )
        model = load_model(reference, dtype=compute, quantization=quantization, head=head)
        fresh = unquantized_layers(model)
        if fresh:
            raise UserError(
                f"method qlora: {reference} has no pretrained weights for {', '.join(fresh[:3])}"
                f"{' and more' if len(fresh) > 3 else ''} (a layer initialised fresh, which bitsandbytes cannot "
                "quantise); is this model meant for this task? Use lora instead"
            )
        return model

    def load_merge_base(self, reference: str, head: ClassifierHead | None = None) -> nn.Module:
        """The 4-bit base the adapter trained against, dequantised to full precision."""
        import torch

        if uses_conv1d(reference):
            # dequantize() turns GPT-2's Conv1D into nn.Linear, which would save transposed weights;
            # there the adapter merges into the original full-precision weights instead.
            return super().load_merge_base(reference, head)
        base = self.load_base(reference, "fp32", head).dequantize()
        return base.to(torch.float32)

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        from peft import prepare_model_for_kbit_training

        # Gradient checkpointing is the loop's business (train.gradient_checkpointing), not PEFT's.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().prepare(model, options, plan)
