"""``tunelab compare COMPARE.yaml [key=value ...]`` and ``tunelab report DIR...``: parse, call, print.

``compare`` trains every entry of a comparison file (see ``tunelab.compare.spec``) and prints the
ranked table and where results.json and report.html are; ``report`` rebuilds the page from
finished comparison folders or plain run folders. Options may come before or after the overrides.
``--executor ray`` trains the entries as Ray tasks (``tunelab.compare.ray_executor``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunelab.compare.executors import EXECUTORS
from tunelab.errors import UserError

COMMANDS = ("compare", "report")


def register(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="train several methods under one budget and compare them",
        description="Train every entry of a comparison file under the same budget; write results and a report.",
    )
    compare.add_argument("comparison", help="comparison YAML (output_dir, base, budget, entries)")
    # REMAINDER keeps options given after the overrides (--only, --quiet); run() picks them out.
    compare.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="key=value", help="e.g. budget.steps=10 base.train.lr=1e-4"
    )
    compare.add_argument("--only", metavar="NAME", help="train this entry again from scratch, keep the others")
    compare.add_argument("--quiet", action="store_true", help="no progress bars")
    compare.add_argument("--seeds", type=int, metavar="N", help="train every entry with N seeds (the file's seeds: N)")
    compare.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="sequential: one entry after another in this process (default); ray: one Ray task per entry",
    )
    compare.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="join this Ray cluster (default: RAY_ADDRESS, else a Ray started on this machine); implies --executor ray",
    )

    report = commands.add_parser("report", help="rebuild the comparison page from comparison or run folders")
    report.add_argument("folders", nargs="+", metavar="DIR", help="comparison folders or finished run folders")
    report.add_argument("--output", help="folder for report.html (default: the comparison folder, if one is given)")


def _late_options(args: argparse.Namespace) -> argparse.Namespace:
    """Options that came after the overrides, moved where argparse would have put them."""
    late = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    late.add_argument("--only")
    late.add_argument("--quiet", action="store_true")
    late.add_argument("--seeds", type=int)
    late.add_argument("--executor", choices=EXECUTORS)
    late.add_argument("--ray-address")
    try:
        found, overrides = late.parse_known_args(list(args.overrides))
    except argparse.ArgumentError as error:
        raise UserError(f"tunelab compare: {error}") from None
    unknown = [item for item in overrides if item.startswith("--")]
    if unknown:
        raise UserError(f"tunelab compare: unrecognized arguments: {' '.join(unknown)}")
    args.overrides = overrides
    args.only = found.only or args.only
    args.quiet = found.quiet or args.quiet
    args.executor = found.executor or args.executor
    args.ray_address = found.ray_address or args.ray_address
    if args.executor is None:
        args.executor = "ray" if args.ray_address else "sequential"
    seeds = found.seeds or args.seeds
    if seeds is not None:
        args.overrides.append(f"seeds={seeds}")
    return args


def _compare(args: argparse.Namespace) -> int:
    from tunelab.compare.recommend import recommend
    from tunelab.compare.report import format_table
    from tunelab.compare.runner import run_comparison
    from tunelab.compare.seeds import fold_seeds
    from tunelab.compare.spec import load_comparison

    args = _late_options(args)
    spec = load_comparison(args.comparison, args.overrides)
    result = run_comparison(
        spec, only=args.only, progress=not args.quiet, executor=args.executor, ray_address=args.ray_address
    )
    print(format_table(result.records))
    answer = recommend(fold_seeds(result.records))
    if answer is not None:
        print("\n" + "\n".join(answer.lines()) + "\n")
    print(f"results: {result.results_json} (and {result.results_csv.name})")
    print(f"report:  {result.report_html}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from tunelab.compare.report import format_table, write_report
    from tunelab.compare.results import RESULTS_JSON, load_records

    folders = [Path(folder) for folder in args.folders]
    output = args.output
    if output is None:
        if len(folders) != 1 or not (folders[0] / RESULTS_JSON).is_file():
            raise UserError("tunelab report: give --output (the default is a single comparison folder)")
        output = folders[0]
    records, environment = load_records(folders)
    page = write_report(records, environment, Path(output))
    print(format_table(records))
    print(f"report: {page}")
    return 0


def run(args: argparse.Namespace) -> int:
    return _compare(args) if args.command == "compare" else _report(args)
