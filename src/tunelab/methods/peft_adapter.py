"""What every PEFT-backed method shares: wrapping, saving, loading and merging a PEFT adapter.

Each PEFT method only says which ``peft`` config its options become: the generic ``peft`` method
and its presets ``lora``, ``dora``, ``ia3`` (peft_method), and the methods that add behaviour of
their own (qlora, adalora, prompt_learning, llama_adapter). What is ours here: the classification
head named for PEFT's ``modules_to_save``, the empty-adapter check and one-line errors.
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


def head_modules_to_save(head: dict[str, nn.Module]) -> list[str]:
    """The classification head as PEFT's ``modules_to_save``: each module in it that holds weights
    itself (``classifier``, ``score``, ``pooler.dense``), not a container around them (BERT's
    ``pooler``): PEFT's tuners other than LoRA cannot merge around a wrapped module without a weight."""
    names = set()
    for name, module in head.items():
        for inner, part in module.named_modules():
            if any(True for _ in part.parameters(recurse=False)):
                names.add(".".join([name.rsplit(".", 1)[-1], *([inner] if inner else [])]))
    return sorted(names)


class PeftAdapterMethod(Method):
    saves_adapter_only = True

    def peft_config(self, options: MethodOptions, plan: TrainingPlan) -> PeftConfig:  # pragma: no cover
        raise NotImplementedError  # every subclass says which PEFT config its options become

    def label(self, options: MethodOptions) -> str:
        """The method as errors name it (the generic peft method adds its type: ``peft (loha)``)."""
        return self.name

    def load_base(self, reference: str, precision: str, head: ClassifierHead | None = None) -> nn.Module:
        """The frozen base in the run's precision (bf16 / fp16 halve its memory); PEFT keeps the
        adapter weights in fp32 (``autocast_adapter_dtype``)."""
        import torch

        from tunelab.methods.loading import load_model

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
                raise UserError(
                    f"method {self.label(options)} cannot train a classification head (PEFT has no modules_to_save)"
                )
            config.modules_to_save = sorted({*(config.modules_to_save or []), *head_modules_to_save(head)})
        try:
            peft_model = get_peft_model(model, config)
        except (ValueError, TypeError, KeyError, NotImplementedError) as error:
            raise UserError(f"method {self.label(options)}: {first_line(error)}") from None
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
        try:
            return model.merge_and_unload()
        except (NotImplementedError, ValueError) as error:  # a tuner PEFT cannot merge (Lily, Poly, ...)
            kind = str(model.peft_config[model.active_adapter].peft_type.value).lower()
            raise UserError(
                f"method {self.name}: PEFT cannot merge a {kind} adapter into its base model ({first_line(error)}); "
                f"load the run folder {directory} directly instead"
            ) from None
