"""Load a pretrained model (a causal LM, a classifier, a bare encoder) and a tokenizer from a hub
id, a local folder or a GGUF file.

A finished run folder whose method saved the whole model loads here like any model folder; a run
that saved an adapter needs its method to put it on the base, which is ``tunelab.methods.loading``'s
job (methods sit above models). Tokenizers need no method: every trained run saves its tokenizer, and
a run without one (zero-shot, few-shot, RAG: nothing trained) uses its base's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from tunelab.errors import UserError, first_line
from tunelab.models.resolve import check_model_reference, model_location
from tunelab.run_files import is_run_folder, read_run_config, read_summary

TOKENIZER_FILE = "tokenizer_config.json"  # what tokenizer.save_pretrained always writes
log = logging.getLogger("tunelab")

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedTokenizerBase


def load_tokenizer(reference: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    check_model_reference(reference)
    if is_run_folder(reference) and not (Path(reference) / TOKENIZER_FILE).is_file():
        reference = str(read_run_config(reference)["model"])  # nothing trained, nothing saved: the base's
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


@dataclass(frozen=True)
class ClassifierHead:
    """A sequence-classification head to put on the model: its labels (index order) and padding id.

    Decoders (Llama, GPT-2, Qwen2) classify from the last non-padding token, which transformers
    finds through ``pad_token_id``; their tokenizers often have none, so we pass ours.
    """

    labels: tuple[str, ...]
    pad_token_id: int | None = None

    def config_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {label: index for index, label in enumerate(self.labels)},
        }
        if self.pad_token_id is not None:
            kwargs["pad_token_id"] = self.pad_token_id
        return kwargs


def run_head(reference: str | Path) -> ClassifierHead | None:
    """The classification head a finished run was trained with (None for language-model runs)."""
    summary = read_summary(reference)
    if summary.get("task") != "classification":
        return None
    return ClassifierHead(tuple(summary["labels"]), summary.get("pad_token_id"))


def load_pretrained(
    reference: str, dtype: torch.dtype | None, quantization: object | None = None, head: ClassifierHead | None = None
) -> nn.Module:
    """The model saved at ``reference`` as it is: a causal LM, or with ``head`` a sequence classifier."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own progress bar is the one that matters
    extra: dict[str, Any] = {"quantization_config": quantization} if quantization is not None else {}
    auto_class = AutoModelForCausalLM
    if head is not None:
        auto_class = AutoModelForSequenceClassification
        extra.update(head.config_kwargs())
    location = model_location(reference)
    if dtype is None and quantization is None:
        dtype = fastest_stored_dtype(location)
    try:
        return auto_class.from_pretrained(location, dtype=dtype or "auto", **extra)
    except (OSError, ValueError, SafetensorError) as error:
        raise UserError(f"model: cannot load '{reference}': {_why(location, error)}") from None


def fastest_stored_dtype(location: str) -> torch.dtype | None:
    """The dtype to load a checkpoint in when the caller names none: as stored (None: transformers'
    ``auto``), except on a machine without a GPU whose CPU multiplies the checkpoint's half precision
    at under half fp32's rate (bf16 without AVX512-BF16 or AMX): then fp32, as transformers 4 loaded every
    model. On such a CPU (AVX2 alone) SmolLM2 in bf16 read a prompt batch at x0.23 fp32's speed
    (bench/README.md); fp32 holds the weights in twice the memory."""
    import torch
    from transformers import AutoConfig

    from tunelab.matmul_rates import cpu_multiplies_far_slower_than_fp32, gpu_present

    if gpu_present():
        return None
    try:
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError):
        return None  # loading the model says what is wrong
    if getattr(config, "quantization_config", None) is not None:
        return None  # GPTQ, AWQ, bitsandbytes, fp8 checkpoints load as their quantizer says
    stored = getattr(config, "dtype", None)
    if isinstance(stored, str):
        stored = getattr(torch, stored, None)
    if stored not in (torch.bfloat16, torch.float16):
        return None
    if not cpu_multiplies_far_slower_than_fp32(stored):
        return None
    name = str(stored).removeprefix("torch.")
    log.info(f"model: stored in {name}, which this CPU multiplies far slower than fp32: loaded in fp32")
    return torch.float32


def damaged_weights_file(folder: Path) -> Path | None:
    """The first ``.safetensors`` file in ``folder`` whose header or size does not hold together."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                for name in weights.keys():  # noqa: SIM118  (safe_open has keys(), not iteration)
                    weights.get_slice(name)
        except (SafetensorError, OSError):
            return path
    return None


def _why(location: str, error: BaseException) -> str:
    """What went wrong loading, naming a damaged weights file where that is the cause."""
    damaged = damaged_weights_file(Path(location)) if Path(location).is_dir() else None
    if damaged is not None:
        return f"{damaged} is damaged (truncated or corrupt: {first_line(error)}); copy or download it again"
    return first_line(error)


def load_backbone(reference: str, dtype: torch.dtype | None = None, key: str = "model") -> nn.Module:
    """The bare pretrained network without a task head (``AutoModel``): what embeddings are read from.

    ``key`` names the config key in the error (``model``, ``embedder``)."""
    from transformers import AutoModel

    check_model_reference(reference)
    location = model_location(reference)
    try:
        return AutoModel.from_pretrained(location, dtype=dtype or "auto")
    except (OSError, ValueError, SafetensorError) as error:
        raise UserError(f"{key}: cannot load '{reference}': {_why(location, error)}") from None


def model_context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's positions allow, from its config (None where it has no limit)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
