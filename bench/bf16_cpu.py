"""bf16 against fp32 on this machine: tokens/s, memory, MFU, and how far the loss curve drifts.

``train.precision=bf16`` runs the matmuls in bf16 (autocast; adapter methods also keep their frozen
base in bf16, their trainable weights in fp32). This script trains the same config twice, fp32 then
bf16 (then fp32 again with ``--rounds 2``), each in a fresh process so its peak RSS is its own, for
``--steps`` optimizer steps with a loss line per step, and reports per run: steady tokens/s (after
the first step), peak RSS, MFU against the matmul peak measured at that precision (fp32's where
that is faster: bf16 on a CPU without bf16 instructions), and the loss
curve against fp32's: the largest per-step gap, and the largest gap of 20-step means (the
tolerance the README states is on the latter, since single steps are noisy in either precision).

    python bench/bf16_cpu.py                         # SmolLM2, LoRA, 200 steps of 1 x 128 tokens
    python bench/bf16_cpu.py --method full --steps 50
    python bench/bf16_cpu.py --model ../shared/data/models/stories260K-hf --steps 200 --batch 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import ALPACA_DEMO as ROWS  # noqa: E402
from shared_inputs import default_model  # noqa: E402

WINDOW = 20  # steps per mean when comparing curves
FIGURES = ("steady_tokens_per_s", "tokens_per_s", "peak_memory_bytes", "mfu", "matmul_peak_gflops", "train_loss")


def child(args: argparse.Namespace) -> None:
    """One training run in this process; prints its figures and loss curve as one JSON line."""
    from tunelab.methods.config_loading import load_config
    from tunelab.training.recipe import train

    overrides = [
        f"model={args.model}",
        f"data.train={ROWS}",
        "data.format=instruction",
        f"data.max_length={args.max_length}",
        f"output_dir={args.output}",
        f"method.name={args.method}",
        f"train.precision={args.child}",
        f"train.batch_size={args.batch}",
        f"train.max_steps={args.steps}",
        "train.log_every=1",
        "train.scheduler=constant",
        f"train.threads={args.threads}",
        f"train.lr={2e-4 if args.method != 'full' else 2e-5}",
    ]
    if args.method == "lora":
        overrides += ["method.r=16", "method.alpha=32"]
    result = train(load_config(None, overrides), overwrite=True, progress=False)
    curve = [json.loads(line)["loss"] for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    print(json.dumps({"precision": args.child, "curve": curve, **{key: result.summary.get(key) for key in FIGURES}}))


def run(precision: str, args: argparse.Namespace, scratch: Path) -> dict:
    command = [sys.executable, __file__, "--child", precision, "--output", str(scratch / precision)]
    for option in ("model", "method", "steps", "batch", "max_length", "threads"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"{precision} run failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def window_means(curve: list[float]) -> list[float]:
    return [statistics.fmean(curve[start : start + WINDOW]) for start in range(0, len(curve), WINDOW)]


def curve_gaps(reference: list[float], other: list[float]) -> tuple[float, float, float]:
    """(largest per-step gap, largest gap of 20-step means, that gap relative to fp32's mean)."""
    step_gap = max(abs(a - b) for a, b in zip(reference, other, strict=True))
    pairs = list(zip(window_means(reference), window_means(other), strict=True))
    mean_gap = max(abs(a - b) for a, b in pairs)
    relative = max(abs(a - b) / abs(a) for a, b in pairs)
    return step_gap, mean_gap, relative


def report(results: list[dict], args: argparse.Namespace) -> None:
    print(f"\nmodel {args.model}, {args.method}, batch {args.batch} x {args.max_length}, {args.steps} steps\n")
    print("| run | steady tokens/s | peak RSS MiB | MFU | matmul peak GFLOP/s | final loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for index, result in enumerate(results):
        print(
            f"| {index + 1} {result['precision']} | {result['steady_tokens_per_s']:.1f} | "
            f"{result['peak_memory_bytes'] / 2**20:,.0f} | {result['mfu']:.1%} | {result['matmul_peak_gflops']:.0f} | "
            f"{result['train_loss']:.4f} |"
        )
    by_precision = {precision: [r for r in results if r["precision"] == precision] for precision in ("fp32", "bf16")}
    fp32, bf16 = by_precision["fp32"], by_precision["bf16"]
    speed = statistics.median(r["steady_tokens_per_s"] for r in bf16) / statistics.median(
        r["steady_tokens_per_s"] for r in fp32
    )
    memory = statistics.median(r["peak_memory_bytes"] for r in bf16) / statistics.median(
        r["peak_memory_bytes"] for r in fp32
    )
    step_gap, mean_gap, relative = curve_gaps(fp32[0]["curve"], bf16[0]["curve"])
    print(f"\nbf16 / fp32: steady tokens/s x{speed:.2f}, peak RSS x{memory:.2f}")
    print(
        f"loss curve, bf16 against fp32: largest per-step gap {step_gap:.4f}; "
        f"largest gap of {WINDOW}-step means {mean_gap:.4f} ({relative:.2%} of fp32's)"
    )
    if len(fp32) > 1:
        fp32_gaps = curve_gaps(fp32[0]["curve"], fp32[1]["curve"])
        print(f"fp32 against itself (run to run): per-step {fp32_gaps[0]:.4f}, {WINDOW}-step means {fp32_gaps[1]:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--method", default="lora")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1: steadiest on a busy machine)")
    parser.add_argument("--rounds", type=int, default=1, help="2: fp32, bf16, fp32 (run-to-run noise of fp32)")
    parser.add_argument("--child", choices=("fp32", "bf16"))
    parser.add_argument("--output")
    parser.add_argument("--json", type=Path, help="also write every run's figures and curve here")
    args = parser.parse_args()
    if not ROWS.is_file():
        raise SystemExit(f"this benchmark needs the Alpaca demo at {ROWS} (../shared/data next to the project)")
    args.model = default_model(args.model)
    if args.child:
        child(args)
        return
    order = ["fp32", "bf16"] + ["fp32"] * (args.rounds - 1)
    results = []
    with tempfile.TemporaryDirectory(prefix="bf16-bench-") as scratch:
        for precision in order:
            results.append(run(precision, args, Path(scratch)))
            print(f"{precision}: {results[-1]['steady_tokens_per_s']:.1f} tokens/s", flush=True)
    report(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
