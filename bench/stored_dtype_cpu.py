"""A model answering in bf16 against fp32 on this CPU: reading a prompt batch, and generating.

Most hub checkpoints are stored in bf16 and transformers 5 loads them as stored. On a CPU without
bf16 instructions that makes reading prompts (a matrix product per layer over every prompt token)
several times slower, while generating a token at a time barely changes; tunelab therefore loads
such checkpoints in fp32 there (``models.loading.fastest_stored_dtype``). This script measures
both phases in both dtypes in one process, interleaved, best of ``--repeats``, and prints the ratio
and this CPU's matmul rates (what the loading decision reads).

    python bench/stored_dtype_cpu.py                        # SmolLM2, 4 prompts x 256 tokens, 16 new tokens
    python bench/stored_dtype_cpu.py --model ../shared/data/models/stories260K-hf --prompt-tokens 512
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_inputs import default_model  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def read_prompts(model: torch.nn.Module, ids: torch.Tensor) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        model(input_ids=ids, logits_to_keep=1)
    return time.perf_counter() - started


def generate(model: torch.nn.Module, ids: torch.Tensor, new_tokens: int) -> float:
    started = time.perf_counter()
    with torch.no_grad():
        model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    from tunelab.matmul_rates import matmul_rate
    from tunelab.methods.loading import load_model

    model = load_model(default_model(args.model), dtype=torch.float32).eval()
    vocabulary = model.config.vocab_size
    ids = torch.randint(0, vocabulary, (args.batch, args.prompt_tokens), generator=torch.Generator().manual_seed(0))
    short = ids[:, :16]
    times: dict[str, dict[str, float]] = {name: {"read": float("inf"), "generate": float("inf")} for name in DTYPES}
    for dtype in DTYPES.values():  # warm up each dtype's kernels once
        read_prompts(model.to(dtype), short)
    for _ in range(args.repeats):
        for name, dtype in DTYPES.items():
            model.to(dtype)
            times[name]["read"] = min(times[name]["read"], read_prompts(model, ids))
            times[name]["generate"] = min(times[name]["generate"], generate(model, short, args.new_tokens))
    cpu = torch.device("cpu")
    rates = {name: matmul_rate(cpu, dtype) / 1e9 for name, dtype in DTYPES.items()}
    print(
        f"capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads; "
        f"matmul GFLOP/s: fp32 {rates['fp32']:.1f}, bf16 {rates['bf16']:.1f}"
    )
    print("| dtype | read prompts s | prompt tokens/s | generate s | generated tokens/s |")
    print("|---|---:|---:|---:|---:|")
    for name in DTYPES:
        read, gen = times[name]["read"], times[name]["generate"]
        print(
            f"| {name} | {read:.2f} | {args.batch * args.prompt_tokens / read:,.0f} | {gen:.2f} "
            f"| {args.batch * args.new_tokens / gen:.1f} |"
        )
    print(
        f"bf16 / fp32 speed: reading prompts x{times['fp32']['read'] / times['bf16']['read']:.2f}, "
        f"generating x{times['fp32']['generate'] / times['bf16']['generate']:.2f}"
    )


if __name__ == "__main__":
    main()
