"""The chunked head loss (training/head_loss.py) of a head with fp32 weights, in fp32 and under bf16 autocast.

Full fine-tuning (and last-layers, and pretraining from scratch) keeps fp32 weights and runs the
model under autocast in a bf16 run; the chunked head runs outside the model's forward, so the
training steps put it under the same autocast. This times the head loss's forward and backward
alone at SmolLM2's head shape (576 x 49,152) on a batch of 4 x 512 positions with the loss on the
last 212 of each row (as completion-only training), both ways, interleaved over ``--rounds``,
medians, with the loss and gradient differences between them.

    python bench/head_precision.py          # ~30 s on 2 CPU cores
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from tunelab.data.tokenize import IGNORE_INDEX
from tunelab.training.head_loss import summed_head_loss


def head_step(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Linear, bf16: bool) -> tuple[float, list]:
    """One forward and backward of the head loss; its loss and the gradients of the hidden states and the head."""
    with torch.autocast(hidden.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = summed_head_loss(hidden, labels, head)
    loss.backward()
    grads = [hidden.grad.clone(), head.weight.grad.clone()]
    hidden.grad = head.weight.grad = None
    return float(loss.detach()), grads


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = nn.Linear(576, 49_152, bias=False)
    hidden = torch.randn(4, 512, 576, requires_grad=True)
    labels = torch.randint(0, 49_152, (4, 512))
    labels[:, :300] = IGNORE_INDEX
    loss32, grads32 = head_step(hidden, labels, head, bf16=False)
    loss16, grads16 = head_step(hidden, labels, head, bf16=True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_index in range(args.rounds):
        for bf16 in (False, True) if round_index % 2 == 0 else (True, False):
            started = time.perf_counter()
            head_step(hidden, labels, head, bf16)
            times[bf16].append(time.perf_counter() - started)
    fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
    targets = int((labels[:, 1:] != IGNORE_INDEX).sum())
    print(f"head loss forward + backward, {targets} target rows, {args.threads} threads")
    print("| head | seconds (median) | vs fp32 |\n|---|---:|---:|")
    print(f"| fp32 | {fp32:.3f} | x1.00 |\n| bf16 autocast | {bf16:.3f} | x{bf16 / fp32:.2f} |")
    print(
        f"loss relative difference {abs(loss16 - loss32) / loss32:.1e}; gradient relative differences: "
        f"hidden states {relative(grads16[0], grads32[0]):.1e}, head weight {relative(grads16[1], grads32[1]):.1e}"
    )


if __name__ == "__main__":
    main()
