"""The seeded order of micro-batches and a resumable position in it.

The order of epoch ``e`` is a permutation drawn from ``seed + e`` alone, so a resumed run can
rebuild it from the position saved in a checkpoint (epoch, micro-batch index) without storing
sampler state. Under distributed runs each process takes every n-th micro-batch, so together
they take the one-process order. Where an epoch's micro-batches do not divide evenly among the
processes, a process left without one gets an empty micro-batch: the loop runs it on one example
with weight zero (DDP needs every process in every step), so it adds nothing and the step's
gradient is the one a single process would compute. accelerate's own sampler repeats examples
from the start of the epoch instead, which changes the last step of every uneven epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DataPosition:
    epoch: int = 0
    micro_batch: int = 0  # index of the next micro-batch to take within the epoch


def micro_batches_per_epoch(item_count: int, batch_size: int, process_count: int = 1) -> int:
    return math.ceil(math.ceil(item_count / batch_size) / process_count)


def epoch_micro_batches(
    item_count: int, batch_size: int, seed: int, epoch: int, process_index: int = 0, process_count: int = 1
) -> list[list[int]]:
    """Item indices of every micro-batch this process takes in ``epoch``."""
    generator = torch.Generator().manual_seed(seed + epoch)
    order = torch.randperm(item_count, generator=generator).tolist()
    batches = [order[start : start + batch_size] for start in range(0, item_count, batch_size)]
    per_process = micro_batches_per_epoch(item_count, batch_size, process_count)
    mine = batches[process_index::process_count]
    while len(mine) < per_process:  # keep processes in step: an empty micro-batch (see FILLER)
        mine.append([])
    return mine


def optimizer_steps_per_epoch(item_count: int, batch_size: int, grad_accum: int, process_count: int = 1) -> int:
    return math.ceil(micro_batches_per_epoch(item_count, batch_size, process_count) / grad_accum)


def iterate_steps(
    item_count: int, batch_size: int, grad_accum: int, seed: int, start: DataPosition, process: tuple[int, int]
) -> Iterator[tuple[list[list[int]], DataPosition]]:
    """Endless (micro-batch groups of one optimizer step, position after it), from ``start``."""
    epoch, index = start.epoch, start.micro_batch
    while True:
        batches = epoch_micro_batches(item_count, batch_size, seed, epoch, *process)
        while index < len(batches):
            group = batches[index : index + grad_accum]
            index += len(group)
            yield group, (DataPosition(epoch, index) if index < len(batches) else DataPosition(epoch + 1, 0))
        epoch, index = epoch + 1, 0
