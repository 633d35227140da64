"""``tunelab train --processes N [--accelerate-config FILE]``: the same training, as N processes.

The launchers are the field's own, never ours: ``torchrun`` (``torch.distributed.run``) for plain
data parallelism, on CPU too (accelerate's own launcher needs MPI for several CPU processes), and
``accelerate launch --config_file FILE`` when the user gives accelerate's config (FSDP, DeepSpeed
ZeRO, a GPU layout), passed through as it is. Every process runs ``tunelab train`` with the same
arguments; the recipe's Accelerator makes them one data-parallel run (see ``accelerator.new_accelerator``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tunelab.errors import UserError


def launch_command(train_arguments: list[str], processes: int, accelerate_config: Path | None = None) -> list[str]:
    """The launcher's command line that runs ``tunelab train train_arguments`` in ``processes`` processes."""
    if processes < 1:
        raise UserError(f"--processes must be at least 1 (got {processes})")
    train = ["-m", "tunelab", "train", *train_arguments]
    if accelerate_config is not None:
        if not Path(accelerate_config).is_file():
            raise UserError(f"--accelerate-config: file not found: {accelerate_config}")
        return [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(accelerate_config),
            "--num_processes",
            str(processes),
            *train,
        ]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *train]


def launch(train_arguments: list[str], processes: int, accelerate_config: Path | None = None) -> int:
    """Run the processes to the end; their exit code (each process prints its own errors)."""
    return subprocess.run(launch_command(train_arguments, processes, accelerate_config)).returncode
