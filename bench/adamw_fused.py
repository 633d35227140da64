"""torch's fused AdamW against the per-tensor loop and foreach: optimizer step time, same updates.

tunelab's optimizer (tunelab.training.optim) is AdamW with decay on matrices only, fused where the
parameters train on a CPU or a CUDA GPU. This script times ``optimizer.step()`` alone on a model's
trainable parameters (all of them: full fine-tuning; or LoRA r16's, made by PEFT on every linear
layer of the blocks) for the three implementations torch has, interleaved over ``--rounds``, the
same gradients for each, and reports the median step time, the ratio to the loop (torch's default
on a CPU) and the largest parameter difference from the loop after ``--steps`` steps.

    python bench/adamw_fused.py                     # SmolLM2's shapes, full and LoRA, 2 threads
    python bench/adamw_fused.py --model ../shared/data/models/stories260K-hf --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import default_model  # noqa: E402

IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def trainable_parameters(folder: str, method: str) -> list[torch.Tensor]:
    """The trainable tensors (detached copies) of the model in ``folder`` under ``method``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))  # shapes are what count
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS))
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def timed_steps(
    start: list[torch.Tensor], grads: list[list[torch.Tensor]], options: dict[str, bool]
) -> tuple[list[float], list[torch.Tensor]]:
    """Each step's seconds, and the parameters after the steps."""
    params = [p.clone().requires_grad_(True) for p in start]
    matrices, vectors = [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]
    groups = [{"params": matrices, "weight_decay": 0.01}, {"params": vectors, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=1e-4, **options)
    seconds = []
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = grad
        started = time.perf_counter()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return seconds, params


def measure(start: list[torch.Tensor], steps: int, rounds: int) -> dict[str, dict[str, float]]:
    generator = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=generator) * 1e-3 for p in start] for _ in range(steps)]
    times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    finals: dict[str, list[torch.Tensor]] = {}
    for round_index in range(rounds):
        names = list(IMPLEMENTATIONS) if round_index % 2 == 0 else list(reversed(IMPLEMENTATIONS))
        for name in names:
            seconds, finals[name] = timed_steps(start, grads, IMPLEMENTATIONS[name])
            times[name] += seconds[1:]  # the first step allocates the moments
    loop = statistics.median(times["loop"])
    return {
        name: {
            "step_s": statistics.median(times[name]),
            "vs_loop": statistics.median(times[name]) / loop,
            "max_difference": max(
                (a - b).abs().max().item() for a, b in zip(finals[name], finals["loop"], strict=True)
            ),
        }
        for name in IMPLEMENTATIONS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a model folder (default: smollm2, else stories260K)")
    parser.add_argument("--methods", default="full,lora", help="full, lora or both")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run (the first is not timed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each implementation")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from tunelab.models.resolve import model_location

    model = default_model(args.model)
    folder = model_location(model)
    print(f"AdamW step on {model}, {args.threads} threads, {args.steps - 1} timed steps x {args.rounds} rounds")
    print("| method | trainable parameters | implementation | step s | vs loop | max |param - loop's| |")
    print("|---|---:|---|---:|---:|---:|")
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        start = trainable_parameters(folder, method)
        count = sum(p.numel() for p in start)
        for name, figures in measure(start, args.steps, args.rounds).items():
            print(
                f"| {method} | {count:,} | {name} | {figures['step_s']:.4f} | x{figures['vs_loop']:.2f} | "
                f"{figures['max_difference']:.1e} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
