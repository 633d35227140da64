"""``tunelab quickstart``: compare five strategies on MiniLM and the examples' sentiment set, offline."""

from __future__ import annotations

import argparse

COMMANDS = ("quickstart",)


def register(commands: argparse._SubParsersAction) -> None:
    quickstart = commands.add_parser(
        "quickstart",
        help="fine-tune MiniLM five ways on a sentiment set and compare them (offline, a few minutes on a CPU)",
    )
    quickstart.add_argument("--output", default="runs/quickstart", help="the comparison folder (default: %(default)s)")
    quickstart.add_argument("--steps", type=int, default=None, help="optimizer steps per strategy")
    quickstart.add_argument(
        "--examples",
        default=None,
        help="a folder holding quickstart-sentiment.yaml and data/ (default: the files installed with tunelab)",
    )
    quickstart.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from tunelab.compare.quickstart import run_quickstart
    from tunelab.compare.report import format_table

    result = run_quickstart(args.output, args.steps, args.examples, progress=not args.quiet)
    print(format_table(result.records))
    print(f"run folders: {result.output_dir / 'runs'}/<name> (config, metrics, summary, trained artifact)")
    print(f"results:     {result.results_json} (and {result.results_csv.name})")
    print(f"report:      {result.report_html} (open it in a browser)")
    print(f'next: tunelab predict {result.output_dir / "runs" / "lora"} --text "The refund never arrived."')
    return 0
