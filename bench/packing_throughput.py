"""What sequence packing buys over padded batches, measured against each other in one run.

For each method (``lora`` and ``full`` by default) the benchmark trains the real pretrained
stories260K Llama on the real Alpaca demo data twice, ``data.packing=false`` (padded batches) and
``data.packing=true``, through tunelab's own Python API (``load_config`` + ``train``). Both runs
use the same seed, the same held-out set (``data.eval_split``) and one epoch, so they see the same
training examples; packing only changes how many of them share a sequence (and so how many
optimizer steps the epoch takes).

Machines are noisy, so the answer is the ratio packed / unpacked within one invocation, with the
two runs of a method back to back (their order alternates between methods and repeats). Beside the
measured ratios it prints figures that involve no timing at all: the tokens the model processes per
epoch, padding included, under either layout, which bounds what packing can save.

Each training runs in a fresh child process, so that the peak resident memory in summary.json
(a process-lifetime figure on CPU) belongs to that run alone and no run inherits another's state.

Each training uses one torch thread by default (``--threads``). On a 2-core machine where anything
else runs now and then, two OpenMP threads wait on each other whenever one core is taken: steps
became 10x slower for minutes at a time (seen while writing this: a 99-step packed epoch took 33 s
in one run, 360 s in the next). With one thread every step stayed within 1.5x of the median, at
about 1.7x the quiet-machine time of two threads; the ratio is what we report, and both sides of it
get the same thread count.

Before training it checks, with tunelab's data pipeline, that the packed and unpacked runs hold
out the very same examples and train on the very same ones, and that the untrained model's
held-out loss is the same whether the held-out set is evaluated packed or padded; so any
eval_loss difference after training comes from training, not from how it is measured.

Needs ../shared/data next to the project (the model and the data); exits with a message without it.

    python bench/packing_throughput.py                    # full: 999 rows, lora and full (~5 min on 2 cores)
    python bench/packing_throughput.py --quick            # smoke run: 200 rows (~1.5 min)
    python bench/packing_throughput.py --output results.json --methods lora --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
MODEL = SHARED_DATA / "models" / "stories260K-hf"
ROWS = SHARED_DATA / "instruct" / "llamafactory" / "alpaca_en_demo.json"
QUICK_ROWS = 200


def check_shared_data() -> None:
    missing = [path for path in (MODEL, ROWS) if not path.exists()]
    if missing:
        sys.exit(
            "this benchmark needs the shared model and data next to the project, at ../shared/data:\n"
            + "\n".join(f"  missing: {path}" for path in missing)
        )


def training_file(limit: int | None, scratch: Path) -> tuple[Path, int]:
    """The data file to train on and its row count: the shared file itself, or its first ``limit`` rows.

    tunelab reads the shared JSON array as it is; a subset is written as JSONL into the scratch
    folder (never into the project or ../shared).
    """
    rows = json.loads(ROWS.read_text(encoding="utf-8"))
    if limit is None or limit >= len(rows):
        return ROWS, len(rows)
    subset = scratch / f"alpaca_en_demo-first{limit}.jsonl"
    subset.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[:limit]), encoding="utf-8")
    return subset, limit


def base_overrides(args: argparse.Namespace, data_file: Path) -> list[str]:
    return [
        f"model={MODEL}",
        f"data.train={data_file}",
        "data.format=instruction",
        f"data.eval_split={args.eval_split}",
        f"data.max_length={args.max_length}",
        f"train.batch_size={args.batch_size}",
        "train.epochs=1",  # equal epochs = equal training examples; max_steps stays unset
        f"train.seed={args.seed}",
        "train.log_every=1",  # a metrics line per step: per-step rates survive a noisy neighbour
    ]


def quiet_libraries() -> None:
    """The same warnings would otherwise repeat once per run; the data check prints tunelab's once."""
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers renames PEFT still calls
    for name in ("tunelab", "bitsandbytes"):  # bitsandbytes: an optional CPU kernel it cannot fetch offline
        logging.getLogger(name).setLevel(logging.ERROR)


# --- Checks that involve no timing -------------------------------------------------------------


def unpack(sequences) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The examples inside packed sequences (they start where position_ids restart at 0)."""
    examples = []
    for sequence in sequences:
        starts = [i for i, position in enumerate(sequence.position_ids) if position == 0] + [len(sequence.input_ids)]
        for begin, end in zip(starts, starts[1:], strict=False):
            examples.append((tuple(sequence.input_ids[begin:end]), tuple(sequence.labels[begin:end])))
    return examples


def as_examples(items) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [(tuple(item.input_ids), tuple(item.labels)) for item in items]


def epoch_layout(items, batch_size: int, seed: int) -> dict[str, int]:
    """Sequences, micro-batches and tokens of one epoch in the loop's own batch order.

    A micro-batch is padded to its longest member, so the tokens the model processes are
    width x rows per batch; the real tokens are the same under both layouts.
    """
    from tunelab.training.batching import epoch_micro_batches

    processed = real = 0
    batches = epoch_micro_batches(len(items), batch_size, seed, epoch=0)
    for indices in batches:
        lengths = [len(items[i].input_ids) for i in indices]
        processed += max(lengths) * len(lengths)
        real += sum(lengths)
    return {"sequences": len(items), "micro_batches": len(batches), "processed_tokens": processed, "real_tokens": real}


def held_out_loss(model, items, pad_id: int, batch_size: int) -> float:
    import torch

    from tunelab.data.collate import collate_tokens
    from tunelab.training.loss import count_target_tokens, summed_token_loss

    total, targets = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            batch = collate_tokens(items[start : start + batch_size], pad_id)
            total += float(summed_token_loss(model(**batch.model_inputs).logits, batch.labels))
            targets += count_target_tokens(batch.labels)
    return total / max(targets, 1)


def check_data(args: argparse.Namespace, data_file: Path) -> dict[str, Any]:
    """Same held-out and training examples under both layouts, and the padding each one costs."""
    import torch

    from tunelab import load_config
    from tunelab.data.chat_template import ensure_chat_template
    from tunelab.data.pipeline import prepare_data
    from tunelab.methods.loading import load_causal_lm
    from tunelab.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(MODEL))
    ensure_chat_template(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prepared = {}
    for packing in (False, True):
        config = load_config(None, base_overrides(args, data_file) + [f"data.packing={str(packing).lower()}"])
        prepared[packing] = prepare_data(config.data, tokenizer, config.train.seed)
    padded, packed = prepared[False], prepared[True]

    same_eval = as_examples(padded.eval) == unpack(packed.eval)
    same_train = as_examples(padded.train) == unpack(packed.train)
    if not (same_eval and same_train):
        sys.exit(
            f"packed and unpacked runs would not compare: same held-out examples {same_eval}, "
            f"same training examples {same_train}"
        )

    model = load_causal_lm(str(MODEL), dtype=torch.float32)
    model.config.use_cache = False
    model.eval()
    untrained = {
        "unpacked": held_out_loss(model, padded.eval, pad_id, args.batch_size),
        "packed": held_out_loss(model, packed.eval, pad_id, args.batch_size),
    }
    return {
        "training_examples": padded.train_examples,
        "held_out_examples": len(padded.eval),
        "held_out_sequences_packed": len(packed.eval),
        "same_held_out_examples": same_eval,
        "same_training_examples": same_train,
        "untrained_eval_loss": untrained,
        "epoch_layout": {
            "unpacked": epoch_layout(padded.train, args.batch_size, args.seed),
            "packed": epoch_layout(packed.train, args.batch_size, args.seed),
        },
        "warnings": padded.warnings,
    }


# --- The timed runs ---------------------------------------------------------------------------


def train_once(overrides: list[str], progress: bool, threads: int) -> dict[str, Any]:
    """One training through tunelab's API, in a child process; its summary plus what we measure around it."""
    import torch

    quiet_libraries()
    torch.set_num_threads(threads)
    from tunelab import load_config, train

    config = load_config(None, overrides)
    wall_started, cpu_started = time.perf_counter(), time.process_time()
    result = train(config, progress=progress)
    wall_s, cpu_s = time.perf_counter() - wall_started, time.process_time() - cpu_started
    lines = (result.run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    steps = [json.loads(line) for line in lines if line.strip()]
    step_rates = [step["tokens_per_s"] for step in steps]
    median_rate = statistics.median(step_rates)
    return {
        "summary": json.loads((result.run_dir / "summary.json").read_text(encoding="utf-8")),
        "train_call_wall_s": wall_s,  # train() end to end: data, model load, loop, evaluation, saving
        "train_call_cpu_s": cpu_s,
        "median_step_tokens_per_s": median_rate,
        # steps at under a third of the median rate: the machine, not the work, slowed them down
        "slow_step_share": sum(rate < median_rate / 3 for rate in step_rates) / len(step_rates),
        # the summary's train_loss is the last logged window, here one step; ten steps say more
        "train_loss_last_10_steps": statistics.fmean(step["loss"] for step in steps[-10:]),
    }


def run_in_child(overrides: list[str], progress: bool, threads: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(train_once, overrides, progress, threads).result()


def run_all(args: argparse.Namespace, data_file: Path, scratch: Path) -> list[dict[str, Any]]:
    runs = []
    for repeat in range(args.repeats):
        for index, method in enumerate(args.methods):
            order = (False, True) if (index + repeat) % 2 == 0 else (True, False)  # alternate to spread drift
            for packing in order:
                name = f"{method}-{'packed' if packing else 'unpacked'}-{repeat}"
                overrides = base_overrides(args, data_file) + [
                    f"method.name={method}",
                    f"data.packing={str(packing).lower()}",
                    f"output_dir={scratch / name}",
                ]
                print(f"  training {name} ...", end="", flush=True)
                outcome = run_in_child(overrides, args.progress, args.threads)
                summary = outcome["summary"]
                print(
                    f" {summary['train_time_s']:.1f} s, {summary['steps']} steps, "
                    f"{outcome['slow_step_share']:.0%} slowed by the machine",
                    flush=True,
                )
                runs.append({"method": method, "packing": packing, "repeat": repeat, **outcome})
    return runs


# --- Report -----------------------------------------------------------------------------------


def aggregate(runs: list[dict[str, Any]], method: str, packing: bool) -> dict[str, Any]:
    """Median timings over repeats; losses and counts come from the first (same seed, same numbers)."""
    mine = [run for run in runs if run["method"] == method and run["packing"] == packing]
    first = mine[0]["summary"]

    def median(get) -> float:
        return statistics.median(get(run) for run in mine)

    return {
        "method": method,
        "packing": packing,
        "repeats": len(mine),
        "steps": first["steps"],
        "train_examples": first["train_examples"],
        "tokens_seen": first["tokens_seen"],
        "train_time_s": median(lambda run: run["summary"]["train_time_s"]),
        "tokens_per_s": median(lambda run: run["summary"]["tokens_per_s"]),
        "median_step_tokens_per_s": median(lambda run: run["median_step_tokens_per_s"]),
        "slow_step_share": median(lambda run: run["slow_step_share"]),
        "peak_memory_bytes": median(lambda run: run["summary"]["peak_memory_bytes"]),
        "train_loss_last_10_steps": mine[0]["train_loss_last_10_steps"],
        "eval_loss": first.get("eval_loss"),
        "train_time_s_all": [run["summary"]["train_time_s"] for run in mine],
        "eval_loss_all": [run["summary"].get("eval_loss") for run in mine],
    }


def ratios(unpacked: dict[str, Any], packed: dict[str, Any], layout: dict[str, Any]) -> dict[str, Any]:
    return {
        "time_ratio": packed["train_time_s"] / unpacked["train_time_s"],
        "tokens_per_s_ratio": packed["tokens_per_s"] / unpacked["tokens_per_s"],
        "median_step_tokens_per_s_ratio": packed["median_step_tokens_per_s"] / unpacked["median_step_tokens_per_s"],
        "steps_ratio": packed["steps"] / unpacked["steps"],
        "processed_tokens_ratio": layout["packed"]["processed_tokens"] / layout["unpacked"]["processed_tokens"],
        "eval_loss_difference": (
            packed["eval_loss"] - unpacked["eval_loss"]
            if packed["eval_loss"] is not None and unpacked["eval_loss"] is not None
            else math.nan
        ),
    }


def markdown_table(rows: list[dict[str, Any]], layout: dict[str, Any]) -> str:
    lines = [
        "| method | packing | steps | sequences | processed tokens | train_time_s | tokens/s | "
        "median step tokens/s | slow steps | peak RSS MiB | train_loss (last 10 steps) | eval_loss |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        shape = layout["packed" if row["packing"] else "unpacked"]
        lines.append(
            f"| {row['method']} | {'yes' if row['packing'] else 'no'} | {row['steps']} | {shape['sequences']} | "
            f"{shape['processed_tokens']:,} | {row['train_time_s']:.1f} | {row['tokens_per_s']:,.0f} | "
            f"{row['median_step_tokens_per_s']:,.0f} | {row['slow_step_share']:.0%} | "
            f"{row['peak_memory_bytes'] / 2**20:,.0f} | {row['train_loss_last_10_steps']:.4f} | "
            f"{row['eval_loss']:.4f} |"
        )
    return "\n".join(lines)


def ratio_table(all_ratios: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| method | time packed/unpacked | tokens/s packed/unpacked | median step tokens/s packed/unpacked | "
        "processed tokens packed/unpacked (no timing) | eval_loss packed - unpacked |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, r in all_ratios.items():
        lines.append(
            f"| {method} | {r['time_ratio']:.3f} | {r['tokens_per_s_ratio']:.3f} | "
            f"{r['median_step_tokens_per_s_ratio']:.3f} | {r['processed_tokens_ratio']:.3f} | "
            f"{r['eval_loss_difference']:+.4f} |"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import torch

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "machine": platform.machine(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke run on the first {QUICK_ROWS} rows")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N rows (default: all 999)")
    parser.add_argument("--methods", default="lora,full", help="comma-separated tunelab methods (default lora,full)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per configuration; timings are medians")
    parser.add_argument("--max-length", type=int, default=512, help="data.max_length (stories260K's context is 512)")
    parser.add_argument("--batch-size", type=int, default=8, help="train.batch_size")
    parser.add_argument("--eval-split", type=float, default=0.05, help="data.eval_split")
    parser.add_argument("--seed", type=int, default=0, help="train.seed")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per training (default 1: see the module docstring for why)",
    )
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default: a new temporary file)")
    parser.add_argument("--progress", action="store_true", help="show tunelab's progress bars (quiet by default)")
    args = parser.parse_args(argv)
    args.methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    if args.quick and args.limit is None:
        args.limit = QUICK_ROWS
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_shared_data()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    from tunelab.errors import UserError

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tunelab-packing-bench-") as scratch_name:
        scratch = Path(scratch_name)
        data_file, row_count = training_file(args.limit, scratch)
        subset_note = "" if data_file == ROWS else f" (subset: first {row_count} rows)"
        print(f"data: {ROWS.name}{subset_note}; model: {MODEL.name}; methods: {', '.join(args.methods)}")
        try:
            data = check_data(args, data_file)
            for warning in data["warnings"]:
                print(f"  note: {warning}")
            untrained = data["untrained_eval_loss"]
            print(
                f"  held-out set: {data['held_out_examples']} examples, identical in both layouts; untrained "
                f"eval_loss unpacked {untrained['unpacked']:.6f}, packed {untrained['packed']:.6f}"
            )
            runs = run_all(args, data_file, scratch)
        except UserError as error:
            sys.exit(f"error: {error}")

    layout = data["epoch_layout"]
    rows, all_ratios = [], {}
    for method in args.methods:
        unpacked, packed = aggregate(runs, method, False), aggregate(runs, method, True)
        rows += [unpacked, packed]
        all_ratios[method] = ratios(unpacked, packed, layout)
    total_s = time.perf_counter() - started

    print()
    print(
        f"Packing vs padded batches: stories260K, {data['training_examples']} training examples "
        f"({row_count} rows{', quick' if args.quick else ''}), 1 epoch, batch {args.batch_size}, "
        f"max_length {args.max_length}, seed {args.seed}, {args.threads} torch thread(s), {args.repeats} run(s) each"
    )
    print()
    print(markdown_table(rows, layout))
    print()
    print(ratio_table(all_ratios))
    print()
    print(
        "time = train_time_s (the loop's step time); tokens/s = real tokens (no padding) per second; "
        "median step tokens/s = median of the per-step rates in metrics.jsonl, which a noisy neighbour moves "
        "far less; slow steps = share of steps under a third of that median (the machine slowed them); "
        "processed tokens = tokens through the model per epoch, padding included (no timing)."
    )
    noisiest = max(row["slow_step_share"] for row in rows)
    if noisiest > 0.1:
        print(
            f"note: the machine slowed up to {noisiest:.0%} of a run's steps; the totals (time, tokens/s) carry "
            "that noise, the median-step ratio much less; --repeats 3 takes medians over runs"
        )
    if total_s > 330:
        print(f"note: this run took {total_s / 60:.1f} min, over the ~5-minute target; --limit 600 or --methods lora")

    results = {
        "benchmark": "packing_throughput",
        "environment": environment(),
        "settings": {
            "model": str(MODEL),
            "data": str(ROWS),
            "rows": row_count,
            "quick": args.quick,
            "methods": args.methods,
            "repeats": args.repeats,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "eval_split": args.eval_split,
            "seed": args.seed,
            "threads": args.threads,
            "epochs": 1,
        },
        "data_check": data,
        "results": rows,
        "ratios": all_ratios,
        "runs": runs,
        "total_seconds": total_s,
    }
    output = args.output
    if output is None:
        handle, name = tempfile.mkstemp(prefix="packing_throughput-", suffix=".json")
        os.close(handle)
        output = Path(name)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {output} (whole benchmark {total_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
