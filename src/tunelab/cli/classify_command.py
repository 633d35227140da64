"""``tunelab predict`` (label texts with a classification run) and ``tunelab embed`` (extract embeddings)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMANDS = ("predict", "embed")


def register(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="label texts with a classification run")
    predict.add_argument("run_dir", help="a finished classification run folder")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", action="append", help="a text to label (repeat for several)")
    source.add_argument("--data", help="a data file (JSONL, CSV, Parquet, .txt) with a text column")
    predict.add_argument("--column", default="text", help="the text column of --data (default: text)")
    predict.add_argument("--output", help="write one JSON line per text here instead of printing a table")

    embed = commands.add_parser("embed", help="embed every text of a data file with a frozen model")
    embed.add_argument("--model", required=True, help="hub id, local model folder, or minilm")
    embed.add_argument("--data", required=True, help="a data file with a text column")
    embed.add_argument("--output", required=True, help="a .safetensors or .parquet file")
    embed.add_argument("--column", default="text", help="the text column (default: text)")
    embed.add_argument("--pooling", choices=("mean", "cls", "last_token"), default="mean")
    embed.add_argument("--layer", type=int, default=-1, help="hidden layer (-1: last)")
    embed.add_argument("--max-length", type=int, default=512, help="tokens per text")
    embed.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")


def run(args: argparse.Namespace) -> int:
    if args.command == "predict":
        return _predict(args)
    from tunelab.features.export import embed_file

    result = embed_file(
        args.model,
        args.data,
        args.output,
        pooling=args.pooling,
        layer=args.layer,
        column=args.column,
        max_length=args.max_length,
        use_cache=not args.no_cache,
    )
    source = "from the cache" if result.cached else "computed"
    print(f"{result.count} embeddings of width {result.width} ({source}) -> {result.output}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tunelab.atomic import write_text_atomic
    from tunelab.data.loading import read_text_rows
    from tunelab.inference.predict import predict_labels

    texts = args.text if args.text else read_text_rows(args.data, args.column)
    predictions = predict_labels(args.run_dir, texts)
    if args.output:
        lines = "".join(json.dumps(item.to_record(), ensure_ascii=False) + "\n" for item in predictions)
        write_text_atomic(Path(args.output), lines)
        print(f"{len(predictions)} predictions -> {args.output}")
        return 0
    for item in predictions:
        shown = "  ".join(f"{label} {probability:.3f}" for label, probability in item.probabilities.items())
        sys.stdout.write(f"{item.label}\t{shown}\t{item.text}\n")
    return 0
