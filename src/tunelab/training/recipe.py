"""The training recipe, top to bottom: check -> data -> model -> method -> loop -> artifact.

Our own loop on accelerate rather than HF Trainer, because we need: packing with per-example
positions, loss normalised by the target tokens of the whole accumulated step (not a mean of
per-micro-batch means), method hooks, and checkpoints that hold only what trains.

Features: AdamW, cosine / linear / constant schedule with warm-up, gradient clipping, gradient
accumulation, fp32 / bf16 / fp16 (CUDA) mixed precision, gradient checkpointing, evaluation every
N steps and at the end, checkpoints every N steps, resume mid-epoch with the same loss curve, data
parallelism (each process takes every n-th micro-batch; figures are summed over processes).
Nothing is deleted or written in ``output_dir`` until the data, model and method are known good.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from tunelab.config.loading import check_training_inputs, with_absolute_paths
from tunelab.config.schema import ScratchModelConfig, TunelabConfig
from tunelab.data.chat_template import ensure_chat_template
from tunelab.data.collate import Batch, collate, padding_id
from tunelab.data.pipeline import PreparedData, prepare_classification_data, prepare_data
from tunelab.errors import UserError
from tunelab.methods.base import Method, TrainingPlan
from tunelab.methods.registry import get_method
from tunelab.models.loading import ClassifierHead, load_tokenizer, load_tokenizer_folder, model_context_length
from tunelab.models.portable import make_portable
from tunelab.models.resolve import gguf_record
from tunelab.models.scratch import build_scratch_model
from tunelab.run.lock import FolderLock
from tunelab.run.run_directory import PENDING, RunDirectory
from tunelab.training.batching import DataPosition, epoch_micro_batches, optimizer_steps_per_epoch
from tunelab.training.checkpoint import (
    TrainingState,
    checkpoint_folder,
    list_checkpoints,
    load_latest_complete_checkpoint,
    save_checkpoint,
)
from tunelab.training.classification import classification_summary, padding_side_for
from tunelab.training.flops import ModelShape, matmul_peak_flops, model_shape
from tunelab.training.head_loss import final_hidden_states, summed_head_loss, supports_head_loss, transformers_model
from tunelab.training.interrupt import StopOnInterrupt, TrainingInterrupted
from tunelab.training.loss import count_targets, summed_loss
from tunelab.training.measure import count_parameters, peak_memory_bytes, reset_peak_memory, weights_bytes
from tunelab.training.nonfinite import NonFiniteGuard
from tunelab.training.optim import build_optimizer, build_scheduler
from tunelab.training.threads import run_threads, torch_threads
from tunelab.training.throughput import StepWork, Throughput
from tunelab.training.tracking import RunTracking, accelerator_options

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger("tunelab")

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
BatchMaker = Callable[[list], Batch]


@dataclass
class TrainResult:
    """What ``train`` returns: the summary (as in summary.json), the run folder and the trained model."""

    summary: dict[str, Any]
    run_dir: Path
    model: torch.nn.Module | None  # None for the strategies that train nothing


@dataclass
class LossWindow:
    """Loss and throughput since the last metrics line (summed over processes)."""

    loss_sum: float = 0.0
    targets: int = 0  # of the steps that updated (a skipped step's loss is left out)
    work: Throughput = field(default_factory=Throughput)

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


def planned_steps(config: TunelabConfig, data: PreparedData, per_epoch: int, processes: int) -> int:
    """Optimizer steps of the run: from the token budget, max_steps or epochs (in that order).

    A token budget becomes the steps that the data's mean sequence length needs to reach it, so
    the learning-rate schedule ends where the budget does; the loop also stops at the budget.
    """
    budget = config.train.max_tokens
    if budget is None:
        return config.train.max_steps or config.train.epochs * per_epoch
    mean_tokens = sum(len(item.input_ids) for item in data.train) / max(len(data.train), 1)
    tokens_per_step = mean_tokens * config.train.batch_size * config.train.grad_accum * processes
    return max(1, math.ceil(budget / max(tokens_per_step, 1.0)))


def check_precision(precision: str) -> None:
    if precision == "fp16" and not torch.cuda.is_available():
        raise UserError("config error: train.precision: fp16 needs a CUDA GPU; use bf16 or fp32")


def sum_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def batch_logits(model: torch.nn.Module, method: Method, batch: Batch) -> torch.Tensor:
    """The model's logits for a batch, lined up with its labels."""
    logits = model(**batch.model_inputs).logits
    return method.align_logits(logits, batch.labels) if batch.labels.dim() == 2 else logits


def batch_loss(model: torch.nn.Module, method: Method, batch: Batch, chunked: bool = True) -> torch.Tensor:
    """The batch's summed loss over its targets. With ``chunked``, a language model's comes from its
    hidden states at the target positions only, where the architecture allows (training.head_loss):
    the same loss without the full logits tensor."""
    if chunked and uses_head_loss(model, batch):
        hidden = method.align_logits(final_hidden_states(model, batch.model_inputs), batch.labels)
        return summed_head_loss(hidden, batch.labels, transformers_model(model).get_output_embeddings())
    return summed_loss(batch_logits(model, method, batch), batch.labels)


def uses_head_loss(model: torch.nn.Module, batch: Batch) -> bool:
    """Whether a language-model batch's loss can skip the full logits (training.head_loss)."""
    return batch.labels.dim() == 2 and supports_head_loss(model)


@dataclass
class Evaluation:
    loss: float  # mean loss per target (token, or example for classification)
    predictions: list[int] | None = None  # classification: the predicted label index of each item


def evaluate(
    model: torch.nn.Module,
    method: Method,
    items: list,
    batch_size: int,
    make_batch: BatchMaker,
    accelerator: Accelerator,
    chunked: bool = True,
) -> Evaluation:
    """Mean loss per target over ``items`` (target-weighted, across all processes); for
    classification also every item's predicted label (single process: items are not split)."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=accelerator.device, dtype=sum_dtype(accelerator.device))
    classify = accelerator.num_processes == 1 and bool(items) and not hasattr(items[0], "labels")
    predictions: list[int] = []
    starts = range(accelerator.process_index * batch_size, len(items), batch_size * accelerator.num_processes)
    with torch.no_grad():
        for start in starts:
            batch = make_batch(items[start : start + batch_size]).to(accelerator.device)
            if classify:
                logits = batch_logits(model, method, batch)
                totals[0] += summed_loss(logits, batch.labels)
                predictions.extend(logits.argmax(dim=-1).tolist())
            else:
                totals[0] += batch_loss(model, method, batch, chunked)
            totals[1] += count_targets(batch.labels)
    totals = accelerator.reduce(totals, "sum")
    model.train(was_training)
    return Evaluation(float(totals[0] / totals[1].clamp(min=1)), predictions if classify else None)


def new_accelerator(precision: str, options: dict[str, Any] | None = None) -> Accelerator:
    """An Accelerator for this run's precision.

    accelerate keeps its state in a process-wide singleton that refuses a second precision; we
    reset it (keeping the distributed process group) so that one Python process can run several
    trainings in a row, as a comparison does.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    launched = launched_processes()
    if launched > 1 and not torch.cuda.is_available():
        # torchrun (or any launcher that sets WORLD_SIZE) on CPU: accelerate runs data-parallel over
        # gloo only when told to use the CPU; otherwise every process would train its own copy
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=MIXED_PRECISION[precision], **(options or {}))
    if accelerator.num_processes != launched:
        raise UserError(
            f"launched as {launched} processes, but accelerate runs {accelerator.num_processes}: each would train "
            "its own copy into the same run folder; on CPU leave ACCELERATE_USE_CPU unset (or true), "
            "or launch with `accelerate launch -m tunelab train ...`"
        )
    return accelerator


def launched_processes() -> int:
    """How many processes the launcher started (torchrun, accelerate launch, mpirun): WORLD_SIZE."""
    return int(os.environ.get("WORLD_SIZE", "1") or "1")


def _prepare_tokenizer_and_data(config: TunelabConfig) -> tuple[PreTrainedTokenizerBase, int, PreparedData]:
    scratch = isinstance(config.model, ScratchModelConfig)
    tokenizer = load_tokenizer_folder(config.model.tokenizer) if scratch else load_tokenizer(config.model)
    if config.task == "classification":
        data = prepare_classification_data(config.data, tokenizer, config.train.seed, config.prompt)
    else:
        ensure_chat_template(tokenizer)
        task_column = getattr(config.method, "task_column", None)
        data = prepare_data(config.data, tokenizer, config.train.seed, task_column=task_column, prompt=config.prompt)
    for warning in data.warnings:
        log.warning(warning)
    log.info(
        f"data: {data.train_examples} training examples ({data.data_format}), "
        f"{len(data.train)} sequences, {len(data.eval)} evaluation sequences"
    )
    return tokenizer, padding_id(tokenizer), data


def _prepare_model(
    config: TunelabConfig,
    method: Method,
    data: PreparedData,
    plan: TrainingPlan,
    tokenizer: PreTrainedTokenizerBase,
    pad_id: int,
) -> tuple[torch.nn.Module, int, PreparedData, str]:
    """The model ready to train, the bytes its base weights take (before the method's additions),
    the items it trains on (the method may turn them into features) and the side to pad on."""
    if isinstance(config.model, ScratchModelConfig):
        if method.saves_adapter_only:
            raise UserError(
                f"config error: method.name: a scratch model trains whole (full or last_layers), "
                f"not with '{method.name}', which would save an adapter for a base that is nowhere"
            )
        model = build_scratch_model(config.model, tokenizer)
    else:
        head = ClassifierHead(tuple(data.labels), pad_id) if config.task == "classification" else None
        model = method.load_base(config.model, config.train.precision, head)
    context = model_context_length(model)
    # prompt methods put their virtual tokens (or prefix) in front of every sequence
    longest = max(len(item.input_ids) for item in [*data.train, *data.eval]) + getattr(
        config.method, "virtual_tokens", 0
    )
    if context is not None and longest > context:
        raise UserError(
            f"config error: data.max_length: sequences of {longest} tokens exceed the model's context "
            f"of {context} positions; set data.max_length={context} or less"
        )
    model.config.use_cache = False
    if config.train.gradient_checkpointing:
        # transformers 5.x renamed gradient_checkpointing_enable; keep working on both names
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    base_bytes = weights_bytes(model)
    side = padding_side_for(model)
    data = method.transform_items(model, data, config.method, plan)
    model = method.prepare(model, config.method, plan)
    if config.train.compile:
        model.compile()  # in place: the state dict keeps its names, checkpoints and artifacts are unchanged
    return model, base_bytes, data, side


def train(config: TunelabConfig, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train as ``config`` says; the run folder receives the artifact, metrics and summary.

    The run folder is locked for the whole run (a second command into it is refused), and a first
    Ctrl-C stops at the next step boundary (``TrainingInterrupted``), a second at once."""
    check_training_inputs(config)
    config = with_absolute_paths(config)
    stop = StopOnInterrupt()  # installed around the loop only
    tracking = RunTracking()
    try:
        with FolderLock(config.output_dir, "run folder"), torch_threads(run_threads(config.train.threads)):
            return _train(config, overwrite, progress, stop, tracking)
    finally:
        stop.restore()
        tracking.finish()  # a run that stopped early still closes its trackers (no-op once finished)


def _train(
    config: TunelabConfig, overwrite: bool, progress: bool, stop: StopOnInterrupt, tracking: RunTracking
) -> TrainResult:
    from accelerate.utils import set_seed

    # 1. Check everything cheap before anything heavy loads (inputs and paths: in train).
    check_precision(config.train.precision)
    method = get_method(config.method.name)
    if config.train.resume and not method.supports_resume:
        raise UserError(
            f"config error: train.resume: method '{method.name}' cannot resume mid-run "
            "(its rank allocator's state is not checkpointed); start the run again with --overwrite"
        )
    if config.task not in method.tasks:
        raise UserError(
            f"config error: method.name: method '{method.name}' does not train task '{config.task}' "
            f"(it trains: {', '.join(method.tasks)})"
        )
    if method.trains_nothing:
        from tunelab.training.in_context import run_in_context

        return run_in_context(config, method, overwrite, progress)
    if config.data.packing and not method.supports_packing:
        raise UserError(
            f"config error: data.packing: method '{method.name}' cannot keep packed examples apart; "
            "set data.packing=false"
        )
    plain_config = config.to_plain()
    run = RunDirectory(config.output_dir)
    run.check_can_start(plain_config, config.train.resume, overwrite)
    accelerator = new_accelerator(config.train.precision, accelerator_options(config.train.report_to, run.path))

    # 2. Data, then model and method: all of it must be good before the run folder is touched.
    tokenizer, pad_id, data = _prepare_tokenizer_and_data(config)
    scratch = isinstance(config.model, ScratchModelConfig)
    model_reference = str(config.model.tokenizer) if scratch else str(config.model)
    process = (accelerator.process_index, accelerator.num_processes)
    per_epoch = optimizer_steps_per_epoch(len(data.train), config.train.batch_size, config.train.grad_accum, process[1])
    total_steps = planned_steps(config, data, per_epoch, process[1])
    plan = TrainingPlan(
        total_steps=total_steps,
        model_reference=model_reference,
        task_count=max(len(data.task_ids), 1),
        task=config.task,
        labels=tuple(data.labels),
    )
    set_seed(config.train.seed)
    reset_peak_memory(accelerator.device)  # the peak covers loading the model, preparing it and training
    model, base_bytes, data, padding_side = _prepare_model(config, method, data, plan, tokenizer, pad_id)
    make_batch = partial(collate, pad_id=pad_id, padding_side=padding_side)
    trainable_params, total_params = count_parameters(model)
    log.info(
        f"method {method.name}: {trainable_params:,} of {total_params:,} parameters train "
        f"({100 * trainable_params / total_params:.4f}%)"
    )
    optimizer = build_optimizer(model, config.train)
    scheduler = build_scheduler(optimizer, config.train, total_steps)
    shape = model_shape(model)
    peak_flops = matmul_peak_flops(accelerator.device, config.train.precision)
    model, optimizer = accelerator.prepare(model, optimizer)

    # 3. The run folder: start it, or resume from its latest checkpoint.
    checkpoints = list_checkpoints(run.checkpoints) if config.train.resume else []
    if accelerator.is_main_process and not checkpoints:
        run.start(plain_config, overwrite=overwrite)
    accelerator.wait_for_everyone()
    state = TrainingState(step=0, position=DataPosition(), tokens_seen=0, train_time_s=0.0)
    if checkpoints:
        state, used = load_latest_complete_checkpoint(
            checkpoints, accelerator.unwrap_model(model), optimizer, scheduler
        )
        if accelerator.is_main_process:
            run.keep_metrics_until(state.step)
        log.info(f"resumed from {used.name} (step {state.step}, epoch {state.position.epoch})")
    tracking.start(accelerator, plain_config, run.path, config.train.report_project)

    # 4. The loop.
    steps = iterate_steps(
        len(data.train), config.train.batch_size, config.train.grad_accum, config.train.seed, state.position, process
    )
    window, last_train_loss, last_eval_loss = LossWindow(), math.nan, None
    run_work, first_step_s = Throughput(), None  # this process's steps (a resumed run: since it resumed)
    chunked = config.train.chunked_loss
    last_eval: Evaluation | None = None
    bar = tqdm(
        total=total_steps,
        initial=state.step,
        disable=not progress or not accelerator.is_main_process,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    model.train()
    budget = config.train.max_tokens
    guard = NonFiniteGuard(config.train.nan_policy, config.train.nan_max_skips)
    stop.install()
    while state.step < total_steps and (budget is None or state.tokens_seen < budget):
        if stop.requested:
            _stop_interrupted(config, run, state, total_steps, accelerator, model, optimizer, scheduler)
        group, next_position = next(steps)
        started = time.perf_counter()
        # an empty micro-batch (a process left without one at an uneven epoch end) runs on the first
        # example with weight zero: every process must take part in every step's gradient sync
        batches = [make_batch([data.train[i] for i in indices or [0]]).to(accelerator.device) for indices in group]
        fillers = [not indices for indices in group]
        step_loss, work = _accumulate(model, method, batches, accelerator, fillers, chunked, shape)
        max_norm = config.train.max_grad_norm if config.train.max_grad_norm is not None else math.inf
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
        learning_rate = scheduler.get_last_lr()[0]
        skipped = guard.check(state.step + 1, step_loss, grad_norm, learning_rate, run.checkpoints)
        if not skipped:
            optimizer.step()
            method.after_optimizer_step(accelerator.unwrap_model(model), state.step)
            if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: the schedule waits too
                scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started

        state.step += 1
        state.position = next_position
        state.tokens_seen += work.tokens
        state.train_time_s += elapsed
        if not skipped:
            window.loss_sum += step_loss
            window.targets += work.targets
        window.work.add(work, elapsed)
        first_step_s = elapsed if first_step_s is None else first_step_s
        if state.step > 1 or total_steps == 1:  # the first step warms up (compile, allocator, caches)
            run_work.add(work, elapsed)
        bar.update(1)
        bar.set_postfix(
            loss=f"{window.mean_loss():.4f}",
            tok_s=f"{window.work.tokens_per_s():.0f}",
            pad=f"{window.work.padding_share():.0%}",
            mfu=f"{window.work.mfu(peak_flops):.0%}",
        )

        last = state.step == total_steps or (budget is not None and state.tokens_seen >= budget)
        every = config.train.eval_every
        due_for_eval = bool(data.eval) and (last or bool(every and state.step % every == 0))
        if last or due_for_eval or state.step % config.train.log_every == 0:
            record: dict[str, Any] = {
                "step": state.step,
                "epoch": round(state.step / per_epoch, 4),
                "loss": window.mean_loss(),
                "lr": learning_rate,
                "tokens_seen": state.tokens_seen,
                "tokens_per_s": window.work.tokens_per_s(),
                **window.work.figures(peak_flops),
            }
            last_train_loss = window.mean_loss()
            if due_for_eval:
                last_eval = evaluate(
                    model, method, data.eval, config.train.batch_size, make_batch, accelerator, chunked
                )
                last_eval_loss = last_eval.loss
                record["eval_loss"] = last_eval_loss
                if last_eval.predictions is not None:
                    record["eval_accuracy"] = classification_summary(data, last_eval.predictions)["accuracy"]
            if accelerator.is_main_process:
                run.append_metrics(record)
                tracking.log(record)
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
    stop.restore()
    bar.close()

    # 5. The artifact and the summary.
    unwrapped = accelerator.unwrap_model(model)
    if math.isnan(last_train_loss):  # resumed at the very end: take the last logged figures
        logged = run.read_metrics()
        last_train_loss = logged[-1]["loss"] if logged else math.nan
        last_eval_loss = next((r["eval_loss"] for r in reversed(logged) if "eval_loss" in r), last_eval_loss)
    summary = {
        "method": method.name,
        "model": plain_config["model"],
        "task": config.task,
        "data_format": data.data_format,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "trainable_pct": 100.0 * trainable_params / total_params,
        # the optimizer steps, plus the embedding pass of feature-based training (0 when cached)
        "train_time_s": state.train_time_s + data.method_seconds,
        "method_prep_time_s": data.method_seconds,
        "tokens_per_s": state.tokens_seen / max(state.train_time_s, 1e-9),
        # after the first step (its warm-up is first_step_s): real and target tokens/s, padding, MFU
        "steady_tokens_per_s": run_work.tokens_per_s(),
        **run_work.figures(peak_flops),
        "first_step_s": first_step_s,
        "matmul_peak_gflops": round(peak_flops / 1e9, 1),
        "threads": torch.get_num_threads(),
        "peak_memory_bytes": peak_memory_bytes(accelerator.device),
        "base_weights_bytes": base_bytes,
        "train_loss": last_train_loss,
        "steps": state.step,
        "epochs": round(state.step / per_epoch, 4),
        "train_examples": data.train_examples,
        "tokens_seen": state.tokens_seen,
        "precision": config.train.precision,
        "device": str(accelerator.device),
        "processes": accelerator.num_processes,
        **gguf_record(config.model),
    }
    if guard.skipped:
        summary["skipped_steps"] = guard.skipped  # train.nan_policy=skip_step: updates left out
    if data.task_ids:
        summary["task_ids"] = data.task_ids  # multi-task prompt tuning: task name -> id
    if data.eval:
        summary["eval_loss"] = last_eval_loss
    if config.task == "classification":
        summary["labels"] = data.labels
        summary["pad_token_id"] = pad_id
        if data.eval and last_eval is None:  # resumed at the very end: evaluate the trained model again
            last_eval = evaluate(model, method, data.eval, config.train.batch_size, make_batch, accelerator, chunked)
        if last_eval is not None and last_eval.predictions is not None:
            summary.update(classification_summary(data, last_eval.predictions))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_artifact(run, method, unwrapped, tokenizer, model_reference)
        # with eval.generate still to come, the run loads as finished but is not marked finished
        generating = config.eval.generate and config.data.eval is not None
        run.write_summary({**summary, PENDING: "eval.generate"} if generating else summary)
        eval_part = f", eval_loss {last_eval_loss:.4f}" if data.eval else ""
        log.info(f"done: {run.path} (train_loss {last_train_loss:.4f}{eval_part})")
    unwrapped.eval()
    if config.eval.generate and accelerator.is_main_process:
        summary = _score_generations(config, run, summary, progress)
    tracking.finish(summary)
    return TrainResult(summary, run.path, unwrapped)


def _stop_interrupted(
    config: TunelabConfig,
    run: RunDirectory,
    state: TrainingState,
    total_steps: int,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
) -> None:
    """Ctrl-C: a checkpoint of the steps done (where checkpoints are on), then one line on how to go on."""
    accelerator.wait_for_everyone()
    done = f"interrupted at step {state.step} of {total_steps}"
    if not config.train.save_every:
        raise TrainingInterrupted(
            f"{done}; no checkpoint was written (train.save_every is off), so run it again with --overwrite"
        )
    saved_now = checkpoint_folder(run.checkpoints, state.step).is_dir()
    if state.step > 0 and accelerator.is_main_process and not saved_now:
        unwrapped = accelerator.unwrap_model(model)
        save_checkpoint(run.checkpoints, unwrapped, optimizer, scheduler, state, config.train.keep_checkpoints)
    if state.step == 0 and not list_checkpoints(run.checkpoints):
        raise TrainingInterrupted(f"{done}; nothing to resume yet, so run it again with --overwrite")
    raise TrainingInterrupted(f"{done}; resume with the same command and train.resume=true")


def _score_generations(config: TunelabConfig, run: RunDirectory, summary: dict[str, Any], progress: bool) -> dict:
    """``eval.generate``: answer data.eval with the trained model; eval.json beside the run, metrics in the summary."""
    from tunelab.evaluation.runner import evaluate_model, summary_metrics

    if config.data.eval is None:
        log.warning("eval.generate needs a data.eval file to answer; nothing was generated")
        return summary
    report = evaluate_model(str(run.path), Path(config.data.eval), run.path, config.eval, progress=progress)
    summary = {**summary, **summary_metrics(report.metrics)}
    run.write_summary(summary)
    return summary


def _accumulate(
    model: torch.nn.Module,
    method: Method,
    batches: list[Batch],
    accelerator: Accelerator,
    fillers: list[bool] | None = None,
    chunked: bool = True,
    shape: ModelShape | None = None,
) -> tuple[float, StepWork]:
    """Forward and backward every micro-batch of one optimizer step; gradients are per target token.

    Each micro-batch's summed loss is divided by the target tokens of the whole step (on all
    processes), so the accumulated gradient is the gradient of the step's mean token loss.
    A filler micro-batch (``fillers``) runs forward and backward with weight zero and counts nothing.
    Returns the step's summed loss and what it processed (``shape`` gives its FLOPs), summed over processes.
    """
    fillers = fillers or [False] * len(batches)
    real = [batch for batch, filler in zip(batches, fillers, strict=True) if not filler]
    local = [
        sum(count_targets(batch.labels) for batch in real),
        sum(batch.real_tokens for batch in real),
        sum(batch.positions for batch in real),
        sum(_batch_flops(model, batch, chunked, shape) for batch in real),
    ]
    counts = torch.tensor(local, device=accelerator.device, dtype=sum_dtype(accelerator.device))
    if accelerator.num_processes > 1:
        counts = accelerator.reduce(counts, "sum")
    targets, tokens, positions, flops = counts.tolist()
    work = StepWork(targets=int(targets), tokens=int(tokens), positions=int(positions), flops=flops)
    # DDP averages gradients over processes; multiplying by their number turns that into a sum.
    scale = accelerator.num_processes / max(work.targets, 1)
    loss_total = torch.zeros((), device=accelerator.device, dtype=sum_dtype(accelerator.device))
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        with nullcontext() if last else accelerator.no_sync(model):
            loss_sum = batch_loss(model, method, batch, chunked)
            if fillers[index]:
                loss_sum = loss_sum * 0.0
            objective = loss_sum * scale
            extra = method.regularization(accelerator.unwrap_model(model)) if last else None
            if extra is not None:  # once per optimizer step, like a term of the step's mean loss
                objective = objective + extra
            accelerator.backward(objective)
        loss_total += loss_sum.detach()
    if accelerator.num_processes > 1:
        loss_total = accelerator.reduce(loss_total, "sum")
    return float(loss_total), work


def _batch_flops(model: torch.nn.Module, batch: Batch, chunked: bool, shape: ModelShape | None) -> float:
    """Training FLOPs of one micro-batch's real tokens (the head on the targets only where chunked)."""
    if shape is None:
        return 0.0
    head_rows = count_targets(batch.labels) if chunked and uses_head_loss(model, batch) else batch.real_tokens
    return shape.step_flops(batch.real_tokens, head_rows, batch.attention_pairs)


def _save_artifact(
    run: RunDirectory, method: Method, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, base: str
) -> None:
    staging = run.path / ".artifact-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    model_config = getattr(model, "config", None)
    if model_config is not None:
        model_config.use_cache = True  # training turned the cache off; generation wants it
    method.save_artifact(model, staging, base)
    tokenizer.save_pretrained(staging)
    make_portable(staging)  # transformers 4 reads it too
    run.install_artifact(staging)
