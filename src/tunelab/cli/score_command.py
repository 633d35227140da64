"""``tunelab score``: score a predictions file against a references file, no model needed.

Parses the options, reads both files (``tunelab.metrics.files``), scores them
(``tunelab.metrics.scoring``), prints a small table and optionally writes the full result as JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunelab.errors import UserError

COMMANDS = ("score",)

# Also in tunelab.metrics.scoring.METRICS; repeated so that building the parser imports nothing heavy.
_METRICS = ("exact_match", "accuracy", "rouge_l", "json")


def register(commands: Any) -> None:
    score = commands.add_parser(
        "score",
        help="score predictions against references (no model needed)",
        description=(
            "Score predictions against references, one per line or record, paired in order. "
            "Files: .jsonl (predictions from 'prediction', 'output', 'generated' or 'text'; references from "
            "'reference', 'output', 'completion', 'label' or 'answer'), .json (a list) or .txt (one per line)."
        ),
    )
    score.add_argument("--predictions", required=True, help="the generated answers")
    score.add_argument("--references", required=True, help="the expected answers")
    score.add_argument(
        "--metric", choices=_METRICS, default=None, help="default: inferred from the references (--labels: accuracy)"
    )
    score.add_argument("--labels", default=None, help="comma-separated class labels for accuracy, e.g. pos,neg")
    score.add_argument("--output", default=None, help="write metrics and per-example scores to this JSON file")


def parse_labels(text: str | None) -> list[str] | None:
    """``a, b,c`` -> ["a", "b", "c"] (duplicates dropped); None when not given."""
    if text is None:
        return None
    labels = list(dict.fromkeys(label.strip() for label in text.split(",") if label.strip()))
    if not labels:
        raise UserError("--labels: give comma-separated labels, e.g. --labels positive,negative")
    return labels


def _number(value: float | int) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def format_scores(metric: str, metrics: dict[str, Any], inferred: bool) -> str:
    """The scalar metrics as an aligned table, then per-class precision/recall for accuracy."""
    note = " (inferred from the references; choose with --metric)" if inferred else ""
    scalars = [[name, _number(value)] for name, value in metrics.items() if isinstance(value, int | float)]
    lines = [f"metric: {metric}{note}", _table(scalars)]
    if metric == "accuracy":
        header = ["label", "precision", "recall", "f1", "support"]
        per_class = [
            [label, *(_number(scores[key]) for key in header[1:])] for label, scores in metrics["per_class"].items()
        ]
        lines += ["", _table([header, *per_class])]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from tunelab.atomic import write_json_atomic
    from tunelab.metrics.files import read_texts
    from tunelab.metrics.scoring import score_predictions

    labels = parse_labels(args.labels)
    predictions = read_texts(args.predictions, "predictions")
    references = read_texts(args.references, "references")
    result = score_predictions(predictions, references, metric=args.metric, labels=labels)
    print(format_scores(result.metric, result.metrics, inferred=args.metric is None and labels is None))
    if args.output:
        write_json_atomic(Path(args.output), result.to_dict())
        print(f"scores: {args.output}")
    return 0
