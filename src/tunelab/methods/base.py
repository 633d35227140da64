"""The interface every training strategy implements; the training loop knows nothing else.

A method says how to load the base it starts from (dtype, quantisation), how to prepare it (wrap
it, freeze what must not train), how its logits line up with the labels, what its artifact is
(only an adapter, or the whole model), how to load that artifact back onto a base, and whether it
can be merged into a standalone model. It also states what the loop must know of it rather than
the loop guessing from option names or item types: the tokens it puts in front of every sequence
(``extra_context_tokens``), the data column it reads beyond the format's own (``task_column``), the
items it trains on (``transform_items``) and how they become a batch (``batch_function``, padded on
``padding_side``). The strategies that train nothing (zero-shot, few-shot, RAG) are not Methods but
``InContextStrategy``s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tunelab.config.schema import MethodOptions

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunelab.data.collate import Batch
    from tunelab.data.pipeline import PreparedData
    from tunelab.models.loading import ClassifierHead


@dataclass(frozen=True)
class TrainingPlan:
    """What a method may need to know about the run when it prepares the model."""

    total_steps: int = 1
    task: str = "causal_lm"  # or "classification": PEFT's task type and which head trains
    labels: tuple[str, ...] = ()  # classification: the label names, in index order
    model_reference: str = ""  # where the tokenizer lives (prompt tuning initialised from text)
    task_count: int = 1  # distinct task ids in the data (multi-task prompt tuning)


def peft_task_type(plan: TrainingPlan) -> str:
    """PEFT's task type for the run: a classifier's head is then trained and saved with the adapter."""
    from peft import TaskType

    return TaskType.SEQ_CLS if plan.task == "classification" else TaskType.CAUSAL_LM


def padding_side_by_architecture(model: nn.Module) -> str:
    """Decoders (Llama, GPT-2, Qwen2) read a label from the last position, so they are padded on the
    left; encoders (BERT, RoBERTa) read it from the first ([CLS]) and are padded on the right, where
    their positions stay those of pretraining."""
    from tunelab.models.heads import is_encoder_type

    return "right" if is_encoder_type(getattr(getattr(model, "config", None), "model_type", None)) else "left"


class Method:
    """Base class for a strategy; subclasses set the class variables and override ``prepare``."""

    name: ClassVar[str]
    options_type: ClassVar[type[MethodOptions]] = MethodOptions
    summary: ClassVar[str] = ""
    trains: ClassVar[str] = ""  # what trains, in a few words
    # True when the artifact is only the trained extra weights (an adapter), loaded onto the base.
    saves_adapter_only: ClassVar[bool] = False
    can_merge: ClassVar[bool] = False
    # False for methods that add a KV cache or tokens of their own (prefix / prompt tuning), with
    # which packed examples would see each other.
    supports_packing: ClassVar[bool] = True
    # False where state outside the weights and optimizer (AdaLoRA's allocator) is not checkpointed.
    supports_resume: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = ("causal_lm", "classification")  # the tasks it can train
    # The train settings this method works with where the user sets none, by task: learning rates
    # orders of magnitude apart (a logistic head, an adapter, a prompt embedding, the whole model).
    # Classification values were chosen on a development split of Financial PhraseBank with MiniLM
    # (bench/phrasebank_minilm.py --dev), causal_lm ones on SNIPS-to-JSON with SmolLM2 and from the
    # methods' papers; bench/README.md has the table.
    recommended: ClassVar[dict[str, dict[str, float]]] = {}

    # True where load_base builds something other than the plain model (qlora's 4-bit base), so that
    # a parameter count (tunelab methods --model) loads the method's own base instead of copying one.
    needs_own_base: ClassVar[bool] = False

    def recommended_train(self, task: str, options: MethodOptions | None = None) -> dict[str, float]:
        """``train.*`` values for ``task`` that the user left unset take these (``options``: the run's,
        for a method whose recommendation depends on them, such as peft's type)."""
        return dict(self.recommended.get(task, {}))

    def load_base(self, reference: str, precision: str, head: ClassifierHead | None = None) -> nn.Module:
        """The model training starts from (with ``head``, a classifier); whole-model methods keep fp32 weights."""
        import torch

        from tunelab.methods.loading import load_model

        return load_model(reference, dtype=torch.float32, merge_adapters=True, head=head)

    def load_merge_base(self, reference: str, head: ClassifierHead | None = None) -> nn.Module:
        """The full-precision base an adapter is merged into."""
        import torch

        from tunelab.methods.loading import load_model

        return load_model(reference, dtype=torch.float32, merge_adapters=True, head=head)

    def extra_context_tokens(self, options: MethodOptions) -> int:
        """Positions the method adds in front of every sequence (virtual tokens, a prefix), which the
        model's context must hold besides the longest example."""
        return 0

    def task_column(self, options: MethodOptions) -> str | None:
        """The data column naming each example's task, where the method reads one (multi-task prompts)."""
        return None

    def padding_side(self, model: nn.Module) -> str:
        """Where a batch of the trained model's inputs is padded: by its architecture, unless the
        method's inputs say otherwise (stored embeddings)."""
        return padding_side_by_architecture(model)

    def batch_function(self, model: nn.Module, task: str, pad_id: int) -> Callable[[list[Any]], Batch]:
        """How a list of this method's training items becomes one micro-batch: token sequences for a
        language model, texts with a label index each (padded on ``padding_side``) for a classifier."""
        from tunelab.data.collate import collate_classification, collate_tokens

        if task == "classification":
            return partial(collate_classification, pad_id=pad_id, padding_side=self.padding_side(model))
        return partial(collate_tokens, pad_id=pad_id)

    def transform_items(
        self, model: nn.Module, data: PreparedData, options: MethodOptions, plan: TrainingPlan
    ) -> PreparedData:
        """The training items this method's model takes (feature-based: embeddings instead of tokens)."""
        return data

    def prepare(self, model: nn.Module, options: MethodOptions, plan: TrainingPlan) -> nn.Module:
        """Return the model to train, with ``requires_grad`` set on exactly what trains."""
        raise NotImplementedError

    def after_optimizer_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step, before gradients are cleared (AdaLoRA's allocator)."""

    def regularization(self, model: nn.Module) -> torch.Tensor | None:
        """An extra loss term added to each optimizer step's loss, or None."""
        return None

    def align_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The logits at the label positions (methods that prepend virtual tokens drop theirs)."""
        return logits

    def save_artifact(self, model: nn.Module, directory: Path, base_reference: str) -> None:
        """Write the trained artifact in the format transformers / PEFT load directly."""
        model.save_pretrained(directory, safe_serialization=True)

    def load_artifact(self, base_model: nn.Module, directory: Path) -> nn.Module:
        """Put a saved artifact onto ``base_model``; whole-model methods load it as the base."""
        return base_model

    def merge(self, model: nn.Module, directory: Path) -> nn.Module:
        """Return a standalone transformers model with the trained weights folded in."""
        from tunelab.errors import UserError

        raise UserError(f"method '{self.name}' cannot be merged into the base model")
