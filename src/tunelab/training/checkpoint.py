"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, data position, and
under fp16 the loss scaler's state (its scale), so that a resumed run does not overflow its way
down from the initial scale again.

``accelerate.save_state`` stores the whole model (gigabytes for a LoRA run whose trainable part
is megabytes) and writes in place; a checkpoint here holds only what trains and is written to a
temporary folder that is renamed into place, so a SIGKILL never leaves a half checkpoint. A
checkpoint is a whole folder, so it is staged here rather than written file by file through
``tunelab.atomic``.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.errors import UserError, first_line
from tunelab.training.batching import DataPosition
from tunelab.training.optim import load_optimizer_state

log = logging.getLogger("tunelab")

CHECKPOINT_PREFIX = "step-"
# what a truncated or corrupt checkpoint file raises on load (safetensors, torch.load, json)
DAMAGED_CHECKPOINT_ERRORS = (
    SafetensorError,
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    pickle.UnpicklingError,
)


def checkpoint_folder(folder: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` lives (``step-00000042``): names sort in step order."""
    return folder / f"{CHECKPOINT_PREFIX}{step:08d}"


@dataclass
class TrainingState:
    step: int
    position: DataPosition
    tokens_seen: int
    train_time_s: float


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}


def _rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainingState,
    keep: int,
    scaler: torch.amp.GradScaler | None = None,
) -> Path:
    """Write ``folder/step-N`` atomically and delete all but the ``keep`` newest checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_folder(folder, state.step)
    staging = folder / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    save_file(trainable_state(model), staging / "trainable.safetensors")
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    torch.save(scheduler.state_dict(), staging / "scheduler.pt")
    torch.save(_rng_states(), staging / "rng.pt")
    if scaler is not None:
        torch.save(scaler.state_dict(), staging / "scaler.pt")
    payload = asdict(state)
    (staging / "state.json").write_text(json.dumps(payload, indent=2))
    for path in staging.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (staging folders are never listed)."""
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if path.is_dir() and path.name.startswith(CHECKPOINT_PREFIX)]
    return sorted(found, key=lambda path: path.name)


def load_checkpoint(
    checkpoint: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None = None,
) -> TrainingState:
    weights = load_file(checkpoint / "trainable.safetensors")
    parameters = dict(model.named_parameters())
    missing = [name for name, p in parameters.items() if p.requires_grad and name not in weights]
    if missing or any(name not in parameters for name in weights):
        raise RuntimeError(f"checkpoint {checkpoint} does not match the model's trainable parameters")
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor.to(parameters[name].device))
    load_optimizer_state(optimizer, torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", map_location="cpu", weights_only=False))
    _restore_rng_states(torch.load(checkpoint / "rng.pt", map_location="cpu", weights_only=False))
    payload = json.loads((checkpoint / "state.json").read_text())
    payload["position"] = DataPosition(**payload["position"])
    state = TrainingState(**payload)
    if scaler is not None and (checkpoint / "scaler.pt").is_file():  # a checkpoint of an fp16 run; last, once
        # the rest has loaded, so that a damaged checkpoint leaves no scale behind for the previous one
        scaler.load_state_dict(torch.load(checkpoint / "scaler.pt", map_location="cpu", weights_only=False))
    return state


def load_latest_complete_checkpoint(
    checkpoints: list[Path],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[TrainingState, Path]:
    """The newest checkpoint that loads whole; a damaged one (truncated by a full disk, say) is
    named and the previous one is tried, down to the oldest."""
    for checkpoint in reversed(checkpoints):
        try:
            return load_checkpoint(checkpoint, model, optimizer, scheduler, scaler), checkpoint
        except DAMAGED_CHECKPOINT_ERRORS as error:
            log.warning(f"checkpoint {checkpoint} is damaged ({first_line(error)}); trying the previous complete one")
    raise UserError(
        f"output_dir {checkpoints[-1].parent.parent}: every checkpoint is damaged; pass --overwrite to start again"
    )
