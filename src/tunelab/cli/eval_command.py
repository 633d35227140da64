"""``tunelab eval``: score a run (or a base model, zero-shot) on a data file; writes eval.json and predictions.jsonl."""

from __future__ import annotations

import argparse

COMMANDS = ("eval",)
METRICS = ("exact_match", "accuracy", "rouge_l", "json", "perplexity")
SHOWN = ("metric", "count", "accuracy", "macro_f1", "exact_match", "rouge_l", "json_validity", "json_f1")


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("eval", help="score a run or a base model on a data file")
    evaluate.add_argument("run_dir", nargs="?", help="a finished run folder (or use --model)")
    evaluate.add_argument("--model", help="a base model (hub id, folder, minilm): evaluated zero-shot")
    evaluate.add_argument("--data", required=True, help="the data file to score (JSONL, CSV, Parquet)")
    evaluate.add_argument("--output", help="folder for eval.json and predictions.jsonl (default: the run folder)")
    evaluate.add_argument("--metric", choices=METRICS, help="default: inferred from the references")
    evaluate.add_argument("--max-new-tokens", type=int, default=None, help="longest answer (default: the run's, 128)")
    evaluate.add_argument("--batch-size", type=int, default=None, help="examples generated at once")
    evaluate.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    evaluate.add_argument("--show-prompt", action="store_true", help="print the exact prompt of the first example")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tunelab.errors import UserError
    from tunelab.evaluation.runner import evaluate_model, setup_for

    if (args.run_dir is None) == (args.model is None):
        raise UserError("eval: give a run folder or --model, not both")
    reference = args.run_dir or args.model
    settings = setup_for(reference).config.eval
    updates = {
        "metric": args.metric,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "limit": args.limit,
    }
    settings = settings.model_copy(update={key: value for key, value in updates.items() if value is not None})
    report = evaluate_model(reference, args.data, args.output, settings, args.show_prompt, progress=not args.quiet)
    for key in SHOWN:
        if key in report.metrics:
            value = report.metrics[key]
            print(f"{key:14s} {value:.4f}" if isinstance(value, float) else f"{key:14s} {value}")
    if "perplexity" in report.metrics:
        print(f"{'perplexity':14s} {report.metrics['perplexity']:.4f}")
    print(f"wrote {report.output / 'eval.json'} and predictions.jsonl")
    return 0
