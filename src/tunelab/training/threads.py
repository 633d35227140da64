"""How many CPU threads torch uses for a training run.

torch's default is one intra-op thread per core it can see, but a launcher changes it: torchrun sets
OMP_NUM_THREADS=1 for every process it starts, so two processes on a 16-core machine used 2 cores.
A run takes ``train.threads`` where set, else OMP_NUM_THREADS where the user set it for a single
process, else the physical cores (hyper-threads add nothing to matmul throughput) shared among the
processes launched on this machine (LOCAL_WORLD_SIZE). The count is restored when the run ends, so a
comparison's in-process runs each get their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")


def visible_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (Linux: /proc/cpuinfo; elsewhere the CPUs)."""
    cpus = visible_cpus()
    try:
        blocks = CPUINFO.read_text().split("\n\n")
    except OSError:
        return len(cpus)
    cores = set()
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        if "processor" in fields and int(fields["processor"]) in cpus:
            cores.add((fields.get("physical id", "0"), fields.get("core id", fields["processor"])))
    return len(cores) or len(cpus)


def run_threads(requested: int | None) -> int:
    """The intra-op thread count for this process (see the module docstring for the order)."""
    if requested:
        return requested
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or "1")
    user_setting = os.environ.get("OMP_NUM_THREADS", "")
    if local_processes == 1 and user_setting.isdigit() and int(user_setting) > 0:
        return int(user_setting)
    return max(1, physical_cores() // max(local_processes, 1))


@contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """torch's intra-op threads set to ``count`` for the block, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)
