"""Load the model a reference names, a finished run's trained model included.

A pretrained model (hub id, folder, GGUF) loads through ``tunelab.models.loading``. A run folder
loads as its method saved it: the whole model where the method saved it whole; for adapter methods
the base (itself possibly a run folder, loaded here again) as the run's method trained it (4-bit for
qlora) with the adapter on top; for zero-shot, few-shot and RAG runs (nothing trained) the base. That
needs the run's method, so it lives in the methods layer: models know nothing of methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import UserError
from tunelab.methods.in_context import InContextStrategy
from tunelab.methods.registry import get_method
from tunelab.models.loading import ClassifierHead, load_pretrained, run_head
from tunelab.models.resolve import check_model_reference
from tunelab.run_files import is_run_folder, read_run_config

if TYPE_CHECKING:
    import torch
    from torch import nn


def load_model(
    reference: str,
    dtype: torch.dtype | None = None,
    merge_adapters: bool = False,
    quantization: object | None = None,
    head: ClassifierHead | None = None,
) -> nn.Module:
    """The model a reference names: a causal LM, or with ``head`` a sequence classifier.

    For an adapter run: its base loaded as the run's method trained it (e.g. 4-bit for qlora)
    with the adapter on top; with ``merge_adapters``, a full-precision base with the adapter
    merged in, ready to train further or to save standalone. A classification run brings its
    own head (labels) unless one is given.
    """
    check_model_reference(reference)
    if not is_run_folder(reference):
        return load_pretrained(reference, dtype, quantization, head)
    head = head or run_head(reference)
    run_config = read_run_config(reference)
    method = get_method(run_config["method"]["name"])
    if isinstance(method, InContextStrategy):  # zero-shot, few-shot, RAG: the base model as it was
        return load_pretrained(run_config["model"], dtype, quantization, head)
    if not method.saves_adapter_only:
        return load_pretrained(reference, dtype, quantization, head)
    if not merge_adapters:
        base = method.load_base(run_config["model"], run_config.get("train", {}).get("precision", "fp32"), head)
        return method.load_artifact(base, Path(reference))
    if not method.can_merge:
        raise UserError(f"model: run {reference} used method '{method.name}', which cannot be merged into its base")
    base = method.load_merge_base(run_config["model"], head)
    return method.merge(method.load_artifact(base, Path(reference)), Path(reference))


def load_causal_lm(
    reference: str, dtype: torch.dtype | None = None, merge_adapters: bool = False, quantization: object | None = None
) -> nn.Module:
    """``load_model`` for a language model (a classification run still loads as its classifier)."""
    return load_model(reference, dtype, merge_adapters, quantization)
