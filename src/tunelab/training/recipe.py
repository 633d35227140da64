"""The training recipe, top to bottom: check -> data -> model -> method -> loop -> artifact.

Our own loop on accelerate rather than HF Trainer, because we need: packing with per-example
positions, loss normalised by the target tokens of the whole accumulated step (not a mean of
per-micro-batch means), method hooks, and checkpoints that hold only what trains.

Features: AdamW, cosine / linear / constant schedule with warm-up, gradient clipping, gradient
accumulation, fp32 / bf16 / fp16 (CUDA) mixed precision, gradient checkpointing, evaluation every
N steps and at the end, checkpoints every N steps, resume mid-epoch with the same loss curve.
Limits: one process per device; data parallelism splits micro-batches across processes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tunelab.config.loading import check_training_inputs
from tunelab.config.schema import TunelabConfig
from tunelab.data.chat_template import ensure_chat_template
from tunelab.data.collate import Batch, collate
from tunelab.data.pipeline import prepare_data
from tunelab.errors import UserError
from tunelab.methods.registry import get_method
from tunelab.models.loading import load_causal_lm, load_tokenizer
from tunelab.run.run_directory import RunDirectory
from tunelab.training.batching import DataPosition, epoch_micro_batches, optimizer_steps_per_epoch
from tunelab.training.checkpoint import TrainingState, list_checkpoints, load_checkpoint, save_checkpoint
from tunelab.training.loss import count_target_tokens, summed_token_loss
from tunelab.training.measure import count_parameters, peak_memory_bytes, reset_peak_memory
from tunelab.training.optim import build_optimizer, build_scheduler

log = logging.getLogger("tunelab")

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class LossWindow:
    """Loss and throughput since the last metrics line."""

    loss_sum: float = 0.0
    targets: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def mean_loss(self) -> float:
        return self.loss_sum / max(self.targets, 1)


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


def check_precision(precision: str) -> None:
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("config error: train.precision: fp16 needs a CUDA GPU; use bf16 or fp32")


def evaluate_loss(model: torch.nn.Module, items: list, batch_size: int, pad_id: int, accelerator) -> float:
    """Mean loss per target token over ``items`` (token-weighted, across all processes)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    targets = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    indices = list(range(accelerator.process_index * batch_size, len(items), batch_size * accelerator.num_processes))
    with torch.no_grad():
        for start in indices:
            batch = collate(items[start : start + batch_size], pad_id).to(accelerator.device)
            logits = model(**batch.model_inputs).logits
            loss_sum += summed_token_loss(logits, batch.labels).double()
            targets += count_target_tokens(batch.labels)
    loss_sum, targets = accelerator.reduce(loss_sum, "sum"), accelerator.reduce(targets, "sum")
    model.train(was_training)
    return float(loss_sum / targets.clamp(min=1))


def _announce(message: str) -> None:
    log.info(message)


@dataclass
class TrainResult:
    """What ``train`` returns: the summary (as in summary.json), the run folder and the trained model."""

    summary: dict[str, Any]
    run_dir: Path
    model: torch.nn.Module


def train(config: TunelabConfig, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train as ``config`` says; the run folder receives the artifact, metrics and summary."""
    from accelerate.utils import set_seed

    # 1. Check everything cheap before anything heavy loads.
    check_training_inputs(config)
    check_precision(config.train.precision)
    plain_config = config.to_plain()
    run = RunDirectory(config.output_dir)
    run.check_can_start(plain_config, config.train.resume, overwrite)
    method = get_method(config.method.name)

    # 2. Data: the tokenizer is light; the model is loaded only once the data is known to be good.
    tokenizer = load_tokenizer(config.model)
    ensure_chat_template(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0  # padding is masked out of attention and loss; any valid id will do
    data = prepare_data(config.data, tokenizer, config.train.seed)
    for warning in data.warnings:
        log.warning(warning)
    _announce(
        f"data: {data.train_examples} training examples ({data.data_format}), "
        f"{len(data.train)} sequences, {len(data.eval)} evaluation sequences"
    )

    # 3. The run folder.
    checkpoints = list_checkpoints(run.checkpoints) if config.train.resume else []
    if not checkpoints:
        run.start(plain_config, overwrite=overwrite)

    # 4. Model and method.
    accelerator = _new_accelerator(config.train.precision)
    set_seed(config.train.seed)
    model = load_causal_lm(config.model, dtype=torch.float32, merge_adapters=True)
    model.config.use_cache = False
    if config.train.gradient_checkpointing:
        # transformers 5.x renamed gradient_checkpointing_enable; keep working on both names
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = method.prepare(model, config.method)
    trainable_params, total_params = count_parameters(model)
    _announce(
        f"method {method.name}: {trainable_params:,} of {total_params:,} parameters train "
        f"({100 * trainable_params / total_params:.4f}%)"
    )

    process = (accelerator.process_index, accelerator.num_processes)
    per_epoch = optimizer_steps_per_epoch(len(data.train), config.train.batch_size, config.train.grad_accum, process[1])
    total_steps = config.train.max_steps or config.train.epochs * per_epoch
    optimizer = build_optimizer(model, config.train)
    scheduler = build_scheduler(optimizer, config.train, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    state = TrainingState(step=0, position=DataPosition(), tokens_seen=0, train_time_s=0.0)
    if checkpoints:
        state = load_checkpoint(checkpoints[-1], accelerator.unwrap_model(model), optimizer, scheduler)
        run.keep_metrics_until(state.step)
        _announce(f"resumed from {checkpoints[-1].name} (step {state.step}, epoch {state.position.epoch})")

    # 5. The loop.
    reset_peak_memory(accelerator.device)
    steps = iterate_steps(
        len(data.train), config.train.batch_size, config.train.grad_accum, config.train.seed, state.position, process
    )
    window, last_train_loss, last_eval_loss = LossWindow(), math.nan, None
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not progress or not accelerator.is_main_process,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    model.train()
    while state.step < total_steps:
        group, next_position = next(steps)
        started = time.perf_counter()
        batches = [collate([data.train[i] for i in indices], pad_id).to(accelerator.device) for indices in group]
        step_loss, step_targets = _accumulate(model, batches, accelerator)
        if config.train.max_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), config.train.max_grad_norm)
        learning_rate = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started

        tokens = sum(batch.real_tokens for batch in batches)
        state.step += 1
        state.position = next_position
        state.tokens_seen += tokens
        state.train_time_s += elapsed
        window.loss_sum += step_loss
        window.targets += step_targets
        window.tokens += tokens
        window.seconds += elapsed
        bar.update(1)
        bar.set_postfix(loss=f"{window.mean_loss():.4f}", tok_s=f"{window.tokens / max(window.seconds, 1e-9):.0f}")

        last = state.step == total_steps
        evaluate = bool(data.eval) and (last or (config.train.eval_every and state.step % config.train.eval_every == 0))
        if last or evaluate or state.step % config.train.log_every == 0:
            record: dict[str, Any] = {
                "step": state.step,
                "epoch": round(state.step / per_epoch, 4),
                "loss": window.mean_loss(),
                "lr": learning_rate,
                "tokens_seen": state.tokens_seen,
                "tokens_per_s": window.tokens / max(window.seconds, 1e-9),
            }
            last_train_loss = window.mean_loss()
            if evaluate:
                last_eval_loss = evaluate_loss(model, data.eval, config.train.batch_size, pad_id, accelerator)
                record["eval_loss"] = last_eval_loss
            if accelerator.is_main_process:
                run.append_metrics(record)
            window = LossWindow()
        if config.train.save_every and (state.step % config.train.save_every == 0 or last):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    run.checkpoints,
                    accelerator.unwrap_model(model),
                    optimizer,
                    scheduler,
                    state,
                    config.train.keep_checkpoints,
                )
    bar.close()

    # 6. The artifact and the summary.
    unwrapped = accelerator.unwrap_model(model)
    if math.isnan(last_train_loss):  # resumed at the very end: take the last logged figures
        logged = run.read_metrics()
        last_train_loss = logged[-1]["loss"] if logged else math.nan
        last_eval_loss = next((r["eval_loss"] for r in reversed(logged) if "eval_loss" in r), last_eval_loss)
    summary = {
        "method": method.name,
        "model": config.model,
        "task": config.task,
        "data_format": data.data_format,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "trainable_pct": 100.0 * trainable_params / total_params,
        "train_time_s": state.train_time_s,
        "tokens_per_s": state.tokens_seen / max(state.train_time_s, 1e-9),
        "peak_memory_bytes": peak_memory_bytes(accelerator.device),
        "train_loss": last_train_loss,
        "steps": state.step,
        "epochs": round(state.step / per_epoch, 4),
        "train_examples": data.train_examples,
        "tokens_seen": state.tokens_seen,
        "precision": config.train.precision,
        "device": str(accelerator.device),
    }
    if data.eval:
        summary["eval_loss"] = last_eval_loss
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_artifact(run, method, unwrapped, tokenizer)
        run.write_summary(summary)
        _announce(
            f"done: {run.path} (train_loss {last_train_loss:.4f}"
            + (f", eval_loss {last_eval_loss:.4f})" if data.eval else ")")
        )
    unwrapped.eval()
    return TrainResult(summary, run.path, unwrapped)


def _new_accelerator(precision: str):
    """An Accelerator for this run's precision.

    accelerate keeps its state in a process-wide singleton that refuses a second precision; we
    reset it (keeping the distributed process group) so that one Python process can run several
    trainings in a row, as a comparison does.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=MIXED_PRECISION[precision])


def _accumulate(model: torch.nn.Module, batches: list[Batch], accelerator) -> tuple[float, int]:
    """Forward and backward every micro-batch of one optimizer step; gradients are per target token.

    Each micro-batch's summed loss is divided by the target tokens of the whole step (on all
    processes), so the accumulated gradient is the gradient of the step's mean token loss.
    """
    local_targets = sum(count_target_tokens(batch.labels) for batch in batches)
    global_targets = local_targets
    if accelerator.num_processes > 1:
        total = torch.tensor(local_targets, device=accelerator.device)
        global_targets = int(accelerator.reduce(total, "sum"))
    # DDP averages gradients over processes; multiplying by their number turns that into a sum.
    scale = accelerator.num_processes / max(global_targets, 1)
    loss_total = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    for index, batch in enumerate(batches):
        sync = nullcontext() if index == len(batches) - 1 else accelerator.no_sync(model)
        with sync:
            logits = model(**batch.model_inputs).logits
            loss_sum = summed_token_loss(logits, batch.labels)
            accelerator.backward(loss_sum * scale)
        loss_total += loss_sum.detach().double()
    return float(loss_total), local_targets


def _save_artifact(run: RunDirectory, method, model: torch.nn.Module, tokenizer) -> None:
    staging = run.path / ".artifact-staging"
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    staging.mkdir()
    base_config = getattr(model, "config", None)
    if base_config is not None:
        base_config.use_cache = True  # training turned the cache off; generation wants it
    method.save_artifact(model, staging)
    tokenizer.save_pretrained(staging)
    run.install_artifact(Path(staging))
