"""Load a tokenizer and a causal LM from a hub id, a local folder or a finished run folder.

A run folder means its trained model: for adapter methods the base (itself possibly a run
folder) with the adapter on top; otherwise the whole model saved in the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.errors import UserError, first_line
from tunelab.models.resolve import check_model_reference, is_run_folder, model_location, read_run_config

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase


def load_tokenizer(reference: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    check_model_reference(reference)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_location(reference))
    except (OSError, ValueError) as error:
        raise UserError(f"model: cannot load the tokenizer of '{reference}': {first_line(error)}") from None
    return tokenizer


def load_tokenizer_folder(folder: Path) -> PreTrainedTokenizerBase:
    """A tokenizer saved on its own (``tunelab tokenizer train``), without a model beside it."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as error:
        raise UserError(f"model.tokenizer: cannot load a tokenizer from {folder}: {first_line(error)}") from None


def _load_pretrained(reference: str, dtype: torch.dtype | None, quantization: object | None = None) -> nn.Module:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own progress bar is the one that matters
    extra = {"quantization_config": quantization} if quantization is not None else {}
    try:
        return AutoModelForCausalLM.from_pretrained(model_location(reference), dtype=dtype or "auto", **extra)
    except (OSError, ValueError) as error:
        raise UserError(f"model: cannot load '{reference}': {first_line(error)}") from None


def load_causal_lm(
    reference: str, dtype: torch.dtype | None = None, merge_adapters: bool = False, quantization: object | None = None
) -> nn.Module:
    """The model a reference names.

    For an adapter run: its base loaded as the run's method trained it (e.g. 4-bit for qlora)
    with the adapter on top; with ``merge_adapters``, a full-precision base with the adapter
    merged in, ready to train further or to save standalone.
    """
    check_model_reference(reference)
    if not is_run_folder(reference):
        return _load_pretrained(reference, dtype, quantization)
    run_config = read_run_config(reference)
    from tunelab.methods.registry import get_method

    method = get_method(run_config["method"]["name"])
    if not method.saves_adapter_only:
        return _load_pretrained(reference, dtype, quantization)
    if not merge_adapters:
        base = method.load_base(run_config["model"], run_config.get("train", {}).get("precision", "fp32"))
        return method.load_artifact(base, Path(reference))
    if not method.can_merge:
        raise UserError(f"model: run {reference} used method '{method.name}', which cannot be merged into its base")
    base = method.load_merge_base(run_config["model"])
    return method.merge(method.load_artifact(base, Path(reference)), Path(reference))
