"""What every PEFT-backed method shares: wrapping, saving, loading and merging a PEFT adapter.

Each PEFT method (``lora`` now; DoRA, IA3, prefix tuning and the rest next) only says which
``peft`` config its options become.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError, first_line
from tunelab.methods.base import Method, TrainingPlan
from tunelab.models.heads import classification_head

if TYPE_CHECKING:
    from peft import PeftConfig
    from torch import nn

    from tunelab.models.loading import ClassifierHead

HALF_PRECISION = {"bf16": "bfloat16", "fp16": "float16"}
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"


def check_adapter_file(path: Path, method: str) -> None:
    """Refuse an adapter saved without its weights: the known FSDP / DeepSpeed ZeRO-3 failure, where
    each process holds only a shard and the saved tensors come out with no elements."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as weights:
        shapes = {name: weights.get_slice(name).get_shape() for name in weights.keys()}  # noqa: SIM118
    # AdaLoRA legitimately saves some pruned-to-nothing tensors; a sharded save leaves every one empty
    if all(0 in shape for shape in shapes.values()):
        what = f"no elements in any of its {len(shapes)} tensors" if shapes else "no tensors"
        raise UserError(
            f"method {method}: the adapter to save has {what}, so it was not written; with FSDP or DeepSpeed "
            "ZeRO-3 the parameters must be gathered onto the main process before saving"
        )


def adapts_embeddings(model: nn.Module) -> bool:
    """Whether a PEFT layer wraps an embedding (``target_modules`` naming ``embed_tokens``, say)."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from torch import nn

    return any(
        isinstance(module, BaseTunerLayer) and isinstance(module.get_base_layer(), nn.Embedding)
        for module in model.modules()
    )


class PeftAdapterMethod(Method):
    saves_adapter_only = True

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:  # pragma: no cover
        raise NotImplementedError  # every subclass says which PEFT config its options become

    def load_base(self, reference: str, precision: str, head: ClassifierHead | None = None) -> nn.Module:
        """The frozen base in the run's precision (bf16 / fp16 halve its memory); PEFT keeps the
        adapter weights in fp32 (``autocast_adapter_dtype``)."""
        import torch

        from tunelab.models.loading import load_model

        dtype = getattr(torch, HALF_PRECISION.get(precision, "float32"))
        return load_model(reference, dtype=dtype, merge_adapters=True, head=head)

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        import torch
        from peft import get_peft_model

        config = self.peft_config(options, plan)
        head = classification_head(model)
        if head:
            # the head (and BERT's pooler) trains and is saved with the adapter; PEFT alone would
            # keep only a module named classifier or score, and leave a freshly initialised pooler frozen
            if not hasattr(config, "modules_to_save"):
                raise UserError(f"method {self.name} cannot train a classification head (PEFT has no modules_to_save)")
            config.modules_to_save = sorted({name.rsplit(".", 1)[-1] for name in head})
        try:
            peft_model = get_peft_model(model, config)
        except (ValueError, TypeError, KeyError, NotImplementedError) as error:
            raise UserError(f"method {self.name}: {first_line(error)}") from None
        for parameter in peft_model.parameters():  # trainable weights stay fp32 over a half-precision base
            if parameter.requires_grad and parameter.dtype in (torch.bfloat16, torch.float16):
                parameter.data = parameter.data.float()
        return peft_model

    def save_artifact(self, model: nn.Module, directory: Path, base_reference: str) -> None:
        # Name the base tunelab trained on (a run folder stays a run folder), so that
        # AutoPeftModelForCausalLM.from_pretrained(run) rebuilds exactly what was trained.
        for config in model.peft_config.values():
            config.base_model_name_or_path = base_reference
        # tunelab never resizes the vocabulary, so the full embedding matrix belongs in the adapter
        # only where the method adapts the embedding layer. Left to "auto", PEFT looks the base up on
        # the hub to compare vocabularies, and warns on every save for a base that is a short name
        # (minilm) or a run folder.
        model.save_pretrained(
            directory, safe_serialization=True, save_embedding_layers="auto" if adapts_embeddings(model) else False
        )
        check_adapter_file(directory / ADAPTER_WEIGHTS_FILE, self.name)

    def load_artifact(self, base_model: nn.Module, directory: Path) -> nn.Module:
        from peft import PeftModel

        return PeftModel.from_pretrained(base_model, directory)

    def merge(self, model: nn.Module, directory: Path) -> nn.Module:
        if not self.can_merge:
            return super().merge(model, directory)
        return model.merge_and_unload()
