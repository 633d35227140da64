"""The training recipe, one phase per method: check, data, model, run folder, steps, finish.

``train(config)`` runs a ``TrainingRecipe``, which reads top to bottom as torchtune's recipes do:
``setup_data``, ``setup_model``, ``start_run_folder``, then per optimizer step ``step``,
``maybe_log_and_evaluate`` and ``maybe_checkpoint``, then ``finish`` (artifact and summary).

Why our own loop on accelerate rather than transformers' Trainer (which now also normalises an
accumulated loss per token, and whose loss curve ours matches where they overlap:
tests/training/test_trainer_parity.py):
- one loop for language-model items, classifier items and precomputed features (feature-based
  training), with each method's hooks (logit alignment, a regulariser, an allocator after each step);
- token budgets (``train.max_tokens``), so a comparison gives every method the same tokens;
- deterministic mid-epoch resume: the data order is a function of seed and epoch, the position is in
  the checkpoint, and a killed run resumes to the same loss curve (tests/training/test_resume.py);
- packing with per-example positions and no FlashAttention, and the loss from the target positions'
  hidden states only (training.head_loss), which a Trainer subclass would have to re-implement;
- checkpoints that hold only what trains, and a throughput equal to a plain PyTorch loop
  (bench/pretrain_shakespeare.py).
Nothing is deleted or written in ``output_dir`` until the data, model and method are known good.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from tunelab.allocator import loaded_allocator
from tunelab.config.loading import as_recorded
from tunelab.config.schema import ScratchModelConfig, TunelabConfig
from tunelab.data.chat_template import ensure_chat_template
from tunelab.data.collate import padding_id
from tunelab.data.pipeline import prepare_classification_data, prepare_data
from tunelab.errors import UserError
from tunelab.methods.base import Method, TrainingPlan
from tunelab.methods.config_loading import check_training_inputs
from tunelab.methods.in_context import InContextStrategy
from tunelab.methods.registry import get_method
from tunelab.models.loading import ClassifierHead, load_tokenizer, load_tokenizer_folder, model_context_length
from tunelab.models.portable import make_portable
from tunelab.models.resolve import gguf_record
from tunelab.models.scratch import build_scratch_model
from tunelab.models.size import count_parameters, weights_bytes
from tunelab.run_files import PENDING
from tunelab.runs.lock import FolderLock
from tunelab.runs.run_directory import RunDirectory
from tunelab.training.accelerator import check_precision, is_sharded, new_accelerator
from tunelab.training.batching import DataPosition, iterate_steps, optimizer_steps_per_epoch
from tunelab.training.checkpoint import (
    TrainingState,
    checkpoint_folder,
    list_checkpoints,
    load_latest_complete_checkpoint,
    save_checkpoint,
)
from tunelab.training.classification import classification_summary
from tunelab.training.cpu_bf16 import slow_bf16_warning
from tunelab.training.evaluation import Evaluation, evaluate
from tunelab.training.flops import mfu_peak_flops, model_shape
from tunelab.training.grouped_attention import grouped_attention
from tunelab.training.in_context import run_in_context
from tunelab.training.interrupt import StopOnInterrupt, TrainingInterrupted
from tunelab.training.measure import peak_memory_bytes, reset_peak_memory
from tunelab.training.nonfinite import NonFiniteGuard
from tunelab.training.optim import build_optimizer, build_scheduler
from tunelab.training.result import TrainResult
from tunelab.training.steps import accumulate
from tunelab.training.swiglu import use_fused_swiglu
from tunelab.training.threads import run_threads, torch_threads
from tunelab.training.throughput import StepWork, Throughput, percent_text
from tunelab.training.tracking import RunTracking, accelerator_options

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tunelab.methods.base import Method

log = logging.getLogger("tunelab")

__all__ = ["TrainResult", "TrainingRecipe", "train"]


@dataclass
class LossWindow:
    """Loss and throughput since the last metrics line (summed over processes)."""

    loss_sum: float = 0.0
    targets: int = 0  # of the steps that updated (a skipped step's loss is left out)
    work: Throughput = field(default_factory=Throughput)

    def mean_loss(self) -> float:
        return self.loss_sum / max(self.targets, 1)


def train(config: TunelabConfig, overwrite: bool = False, progress: bool = True) -> TrainResult:
    """Train as ``config`` says; the run folder receives the artifact, metrics and summary.

    The run folder is locked for the whole run (a second command into it is refused), and a first
    Ctrl-C stops at the next step boundary (``TrainingInterrupted``), a second at once."""
    check_training_inputs(config)
    config = as_recorded(config, fresh=overwrite and not config.train.resume)  # a resume keeps its record
    stop = StopOnInterrupt()  # installed around the loop only
    tracking = RunTracking()
    try:
        with FolderLock(config.output_dir, "run folder"), torch_threads(run_threads(config.train.threads)):
            check_precision(config.train.precision)
            strategy = get_method(config.method.name)
            if isinstance(strategy, InContextStrategy):  # zero-shot, few-shot, RAG: no loop, only answers
                return run_in_context(config, strategy, overwrite, progress)
            return TrainingRecipe(config, strategy, overwrite, progress, stop, tracking).run()
    finally:
        stop.restore()
        tracking.finish()  # a run that stopped early still closes its trackers (no-op once finished)


class TrainingRecipe:
    """One training run. ``run`` calls the phases in order; each phase sets what the next reads."""

    def __init__(
        self,
        config: TunelabConfig,
        method: Method,
        overwrite: bool,
        progress: bool,
        stop: StopOnInterrupt,
        tracking: RunTracking,
    ) -> None:
        self.config, self.overwrite, self.progress = config, overwrite, progress
        self.stop, self.tracking = stop, tracking
        self.method = method
        self.train_config = config.train
        self.plain_config = config.to_plain()
        self.run_folder = RunDirectory(config.output_dir)
        self.state = TrainingState(step=0, position=DataPosition(), tokens_seen=0, train_time_s=0.0)
        self.window = LossWindow()
        self.run_work = Throughput()  # this process's steps after the first (a resumed run: since it resumed)
        self.first_step_s: float | None = None
        self.last_train_loss: float = math.nan
        self.last_eval: Evaluation | None = None
        self.last_eval_loss: float | None = None

    def run(self) -> TrainResult:
        self.check()
        self.check_run_folder()
        self.setup_data()
        self.setup_model()
        self.start_run_folder()
        with grouped_attention(self.accelerator.device):  # on a CPU: keys and values not repeated per head
            self.train_steps()
            return self.finish()

    # -- 1. Everything cheap, before anything heavy loads (inputs and paths: in train) --------------

    def check(self) -> None:
        method, config = self.method, self.config
        if self.train_config.resume and not method.supports_resume:
            raise UserError(
                f"config error: train.resume: method '{method.name}' cannot resume mid-run "
                "(its rank allocator's state is not checkpointed); start the run again with --overwrite"
            )
        if config.task not in method.tasks:
            raise UserError(
                f"config error: method.name: method '{method.name}' does not train task '{config.task}' "
                f"(it trains: {', '.join(method.tasks)})"
            )

    def check_run_folder(self) -> None:
        if self.config.data.packing and not self.method.supports_packing:
            raise UserError(
                f"config error: data.packing: method '{self.method.name}' cannot keep packed examples apart; "
                "set data.packing=false"
            )
        self.run_folder.check_can_start(self.plain_config, self.train_config.resume, self.overwrite)
        options = accelerator_options(self.train_config.report_to, self.run_folder.path)
        self.accelerator = new_accelerator(self.train_config.precision, options)

    # -- 2. Data, then model and method: all of it good before the run folder is touched -----------

    def setup_data(self) -> None:
        config = self.config
        scratch = isinstance(config.model, ScratchModelConfig)
        self.tokenizer = load_tokenizer_folder(config.model.tokenizer) if scratch else load_tokenizer(config.model)
        self.pad_id = padding_id(self.tokenizer)
        if config.task == "classification":
            data = prepare_classification_data(config.data, self.tokenizer, self.train_config.seed, config.prompt)
        else:
            ensure_chat_template(self.tokenizer)
            task_column = self.method.task_column(config.method)
            data = prepare_data(
                config.data, self.tokenizer, self.train_config.seed, task_column=task_column, prompt=config.prompt
            )
        for warning in data.warnings:
            log.warning(warning)
        log.info(
            f"data: {data.train_examples} training examples ({data.data_format}), "
            f"{len(data.train)} sequences, {len(data.eval)} evaluation sequences"
        )
        self.data = data
        self.model_reference = str(config.model.tokenizer) if scratch else str(config.model)
        self.process = (self.accelerator.process_index, self.accelerator.num_processes)
        train = self.train_config
        self.per_epoch = optimizer_steps_per_epoch(len(data.train), train.batch_size, train.grad_accum, self.process[1])
        self.total_steps = self.planned_steps()

    def planned_steps(self) -> int:
        """Optimizer steps of the run: from the token budget, max_steps or epochs (in that order).

        A token budget becomes the steps that the data's mean sequence length needs to reach it, so
        the learning-rate schedule ends where the budget does; the loop also stops at the budget.
        """
        train, data = self.train_config, self.data
        if train.max_tokens is None:
            return train.max_steps or train.epochs * self.per_epoch
        mean_tokens = sum(len(item.input_ids) for item in data.train) / max(len(data.train), 1)
        tokens_per_step = mean_tokens * train.batch_size * train.grad_accum * self.process[1]
        return max(1, math.ceil(train.max_tokens / max(tokens_per_step, 1.0)))

    def setup_model(self) -> None:
        from accelerate.utils import set_seed

        config, method, data = self.config, self.method, self.data
        plan = TrainingPlan(
            total_steps=self.total_steps,
            model_reference=self.model_reference,
            task_count=max(len(data.task_ids), 1),
            task=config.task,
            labels=tuple(data.labels),
        )
        set_seed(self.train_config.seed)
        reset_peak_memory(self.accelerator.device)  # the peak covers loading the model, preparing it and training
        model = self.load_model()
        self.check_context(model)
        model.config.use_cache = False
        if self.train_config.gradient_checkpointing:
            # transformers 5.x renamed gradient_checkpointing_enable; keep working on both names
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.base_bytes = weights_bytes(model)  # before the method's additions
        self.make_batch = method.batch_function(model, config.task, self.pad_id)  # on the base, before prepare
        self.data = method.transform_items(model, data, config.method, plan)  # features, for feature-based methods
        model = method.prepare(model, config.method, plan)
        if self.train_config.fused_swiglu and not self.train_config.compile:
            # same gradients, one (positions x intermediate) tensor less kept per layer; torch.compile
            # recomputes such elementwise work on its own (and does not trace this function)
            use_fused_swiglu(model)
        if self.train_config.compile:
            model.compile()  # in place: the state dict keeps its names, checkpoints and artifacts are unchanged
        self.trainable_params, self.total_params = count_parameters(model)
        log.info(
            f"method {method.name}: {self.trainable_params:,} of {self.total_params:,} parameters train "
            f"({100 * self.trainable_params / self.total_params:.4f}%)"
        )
        optimizer = build_optimizer(
            model, self.train_config, self.accelerator.device.type, sharded=is_sharded(self.accelerator)
        )
        self.scheduler = build_scheduler(optimizer, self.train_config, self.total_steps)
        self.shape = model_shape(model)
        self.peak_flops = mfu_peak_flops(self.accelerator.device, self.train_config.precision)
        if warning := slow_bf16_warning(self.accelerator.device, self.train_config.precision):
            log.warning(warning)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)

    def load_model(self) -> torch.nn.Module:
        config = self.config
        if isinstance(config.model, ScratchModelConfig):
            if self.method.saves_adapter_only:
                raise UserError(
                    f"config error: method.name: a scratch model trains whole (full or last_layers), "
                    f"not with '{self.method.name}', which would save an adapter for a base that is nowhere"
                )
            return build_scratch_model(config.model, self.tokenizer)
        head = ClassifierHead(tuple(self.data.labels), self.pad_id) if config.task == "classification" else None
        return self.method.load_base(config.model, self.train_config.precision, head)

    def check_context(self, model: torch.nn.Module) -> None:
        context = model_context_length(model)
        extra = self.method.extra_context_tokens(self.config.method)  # virtual tokens, a prefix
        longest = max(len(item.input_ids) for item in [*self.data.train, *self.data.eval]) + extra
        if context is not None and longest > context:
            raise UserError(
                f"config error: data.max_length: sequences of {longest} tokens exceed the model's context "
                f"of {context} positions; set data.max_length={context} or less"
            )

    # -- 3. The run folder: start it, or resume from its latest checkpoint --------------------------

    def start_run_folder(self) -> None:
        accelerator, run = self.accelerator, self.run_folder
        checkpoints = list_checkpoints(run.checkpoints) if self.train_config.resume else []
        if accelerator.is_main_process and not checkpoints:
            run.start(self.plain_config, overwrite=self.overwrite)
        accelerator.wait_for_everyone()
        if checkpoints:
            self.state, used = load_latest_complete_checkpoint(
                checkpoints, accelerator.unwrap_model(self.model), self.optimizer, self.scheduler, self.loss_scaler()
            )
            if accelerator.is_main_process:
                run.keep_metrics_until(self.state.step)
            log.info(f"resumed from {used.name} (step {self.state.step}, epoch {self.state.position.epoch})")
        self.tracking.start(accelerator, self.plain_config, run.path, self.train_config.report_project)

    # -- 4. The steps -------------------------------------------------------------------------------

    def done(self) -> bool:
        budget = self.train_config.max_tokens
        return self.state.step >= self.total_steps or (budget is not None and self.state.tokens_seen >= budget)

    def train_steps(self) -> None:
        train = self.train_config
        steps = iterate_steps(
            len(self.data.train), train.batch_size, train.grad_accum, train.seed, self.state.position, self.process
        )
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            disable=not self.progress or not self.accelerator.is_main_process,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        loss_scaled = self.loss_scaler() is not None  # fp16: a loss scaler skips its own overflows
        self.guard = NonFiniteGuard(train.nan_policy, train.nan_max_skips, loss_scaled)
        self.model.train()
        self.stop.install()
        while not self.done():
            if self.stop.requested:
                self.stop_interrupted()
            group, next_position = next(steps)
            self.step(group, next_position)
            last = self.done()
            self.maybe_log_and_evaluate(last)
            self.maybe_checkpoint(last)
        self.stop.restore()
        self.bar.close()

    def step(self, group: list[list[int]], next_position: DataPosition) -> None:
        """One optimizer step over the micro-batches of ``group``."""
        accelerator, model = self.accelerator, self.model
        started = time.perf_counter()
        # an empty micro-batch (a process left without one at an uneven epoch end) runs on the first
        # example with weight zero: every process must take part in every step's gradient sync
        batches = [self.make_batch([self.data.train[i] for i in indices or [0]]) for indices in group]
        batches = [batch.to(accelerator.device) for batch in batches]
        fillers = [not indices for indices in group]
        chunked = self.train_config.chunked_loss
        step_loss, work = accumulate(model, self.method, batches, accelerator, fillers, chunked, self.shape)
        max_norm = self.train_config.max_grad_norm if self.train_config.max_grad_norm is not None else math.inf
        grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
        self.learning_rate = self.scheduler.get_last_lr()[0]
        skipped = self.guard.check(
            self.state.step + 1, step_loss, grad_norm, self.learning_rate, self.run_folder.checkpoints
        )
        scaler = self.loss_scaler()
        if not skipped:
            scale_before = scaler.get_scale() if scaler is not None else None
            self.optimizer.step()
            # the scaler halves its scale where it skipped an update for overflow; accelerate's own
            # flag misses the skips of fused optimizers, which take the scaler's verdict themselves
            overflow = accelerator.optimizer_step_was_skipped or (
                scaler is not None and scaler.get_scale() < scale_before
            )
            if not overflow:  # fp16 overflow: the schedule waits, AdaLoRA's budget reads no inf gradients
                self.method.after_optimizer_step(accelerator.unwrap_model(model), self.state.step)
                self.scheduler.step()
            self.guard.after_optimizer_step(
                self.state.step + 1, overflow, self.learning_rate, self.run_folder.checkpoints
            )
        elif scaler is not None:  # clipping unscaled the gradients: the scaler must close this step itself
            scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.account(step_loss, work, skipped, next_position, time.perf_counter() - started)

    def account(
        self, step_loss: float, work: StepWork, skipped: bool, next_position: DataPosition, elapsed: float
    ) -> None:
        state, window = self.state, self.window
        state.step += 1
        state.position = next_position
        state.tokens_seen += work.tokens
        state.train_time_s += elapsed
        if not skipped:
            window.loss_sum += step_loss
            window.targets += work.targets
        window.work.add(work, elapsed)
        self.first_step_s = elapsed if self.first_step_s is None else self.first_step_s
        if state.step > 1 or self.total_steps == 1:  # the first step warms up (compile, allocator, caches)
            self.run_work.add(work, elapsed)
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{window.mean_loss():.4f}",
            tok_s=f"{window.work.tokens_per_s():.0f}",
            pad=f"{window.work.padding_share():.0%}",
            mfu=percent_text(window.work.mfu(self.peak_flops)),
        )

    def evaluate(self) -> Evaluation:
        train = self.train_config
        return evaluate(
            self.model, self.data.eval, train.batch_size, self.make_batch, self.method, self.accelerator,
            train.chunked_loss, classify=self.config.task == "classification",
        )  # fmt: skip

    def maybe_log_and_evaluate(self, last: bool) -> None:
        every, step = self.train_config.eval_every, self.state.step
        due_for_eval = bool(self.data.eval) and (last or bool(every and step % every == 0))
        if not (last or due_for_eval or step % self.train_config.log_every == 0):
            return
        window = self.window
        record: dict[str, Any] = {
            "step": step,
            "epoch": round(step / self.per_epoch, 4),
            "loss": window.mean_loss(),
            "lr": self.learning_rate,
            "tokens_seen": self.state.tokens_seen,
            "tokens_per_s": window.work.tokens_per_s(),
            **window.work.figures(self.peak_flops),
        }
        self.last_train_loss = window.mean_loss()
        if due_for_eval:
            self.last_eval = self.evaluate()
            self.last_eval_loss = self.last_eval.loss
            record["eval_loss"] = self.last_eval_loss
            if self.last_eval.predictions is not None:
                record["eval_accuracy"] = classification_summary(self.data, self.last_eval.predictions)["accuracy"]
        if self.accelerator.is_main_process:
            self.run_folder.append_metrics(record)
            self.tracking.log(record)
        self.window = LossWindow()

    def maybe_checkpoint(self, last: bool) -> None:
        every = self.train_config.save_every
        if not every or not (self.state.step % every == 0 or last):
            return
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            self.write_checkpoint()

    def write_checkpoint(self) -> None:
        save_checkpoint(
            self.run_folder.checkpoints,
            self.accelerator.unwrap_model(self.model),
            self.optimizer,
            self.scheduler,
            self.state,
            self.train_config.keep_checkpoints,
            self.loss_scaler(),
        )

    def loss_scaler(self) -> torch.amp.GradScaler | None:
        """fp16's loss scaler (accelerate makes one on a GPU), or None."""
        scaler = self.accelerator.scaler
        return scaler if scaler is not None and scaler.is_enabled() else None

    def stop_interrupted(self) -> None:
        """Ctrl-C: a checkpoint of the steps done (where checkpoints are on), then one line on how to go on."""
        state, run = self.state, self.run_folder
        self.accelerator.wait_for_everyone()
        done = f"interrupted at step {state.step} of {self.total_steps}"
        if not self.train_config.save_every:
            raise TrainingInterrupted(
                f"{done}; no checkpoint was written (train.save_every is off), so run it again with --overwrite"
            )
        saved_now = checkpoint_folder(run.checkpoints, state.step).is_dir()
        if state.step > 0 and self.accelerator.is_main_process and not saved_now:
            self.write_checkpoint()
        if state.step == 0 and not list_checkpoints(run.checkpoints):
            raise TrainingInterrupted(f"{done}; nothing to resume yet, so run it again with --overwrite")
        raise TrainingInterrupted(f"{done}; resume with the same command and train.resume=true")

    # -- 5. The artifact and the summary ------------------------------------------------------------

    def finish(self) -> TrainResult:
        accelerator, run, config = self.accelerator, self.run_folder, self.config
        unwrapped = accelerator.unwrap_model(self.model)
        if math.isnan(self.last_train_loss):  # resumed at the very end: take the last logged figures
            logged = run.read_metrics()
            self.last_train_loss = logged[-1]["loss"] if logged else math.nan
            self.last_eval_loss = next(
                (r["eval_loss"] for r in reversed(logged) if "eval_loss" in r), self.last_eval_loss
            )
        if config.task == "classification" and self.data.eval and self.last_eval is None:
            self.last_eval = self.evaluate()  # resumed at the very end: evaluate the trained model again
        summary = self.summary()
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            save_artifact(run, self.method, unwrapped, self.tokenizer, self.model_reference)
            # with eval.generate still to come, the run loads as finished but is not marked finished
            generating = config.eval.generate and config.data.eval is not None
            run.write_summary({**summary, PENDING: "eval.generate"} if generating else summary)
            eval_part = f", eval_loss {self.last_eval_loss:.4f}" if self.data.eval else ""
            log.info(f"done: {run.path} (train_loss {self.last_train_loss:.4f}{eval_part})")
        unwrapped.eval()
        if config.eval.generate and accelerator.is_main_process:
            summary = score_generations(config, run, summary, self.progress, unwrapped, self.tokenizer)
        self.tracking.finish(summary)
        return TrainResult(summary, run.path, unwrapped)

    def summary(self) -> dict[str, Any]:
        state, data, device = self.state, self.data, self.accelerator.device
        summary = {
            "method": self.method.name,
            "model": self.plain_config["model"],
            "task": self.config.task,
            "data_format": data.data_format,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
            "trainable_pct": 100.0 * self.trainable_params / self.total_params,
            # the optimizer steps, plus the embedding pass of feature-based training (0 when cached)
            "train_time_s": state.train_time_s + data.method_seconds,
            "method_prep_time_s": data.method_seconds,
            "tokens_per_s": state.tokens_seen / max(state.train_time_s, 1e-9),
            # after the first step (its warm-up is first_step_s): real and target tokens/s, padding, MFU
            "steady_tokens_per_s": self.run_work.tokens_per_s(),
            **self.run_work.figures(self.peak_flops),
            "first_step_s": self.first_step_s,
            "matmul_peak_gflops": round(self.peak_flops / 1e9, 1),
            "threads": torch.get_num_threads(),
            "peak_memory_bytes": peak_memory_bytes(device),
            "allocator": loaded_allocator(),  # tcmalloc or the system's: it moves speed and memory on the CPU
            "base_weights_bytes": self.base_bytes,
            "train_loss": self.last_train_loss,
            "steps": state.step,
            "epochs": round(state.step / self.per_epoch, 4),
            "train_examples": data.train_examples,
            "tokens_seen": state.tokens_seen,
            "precision": self.train_config.precision,
            "device": str(device),
            "processes": self.accelerator.num_processes,
            **gguf_record(self.config.model),
        }
        if self.guard.skipped:
            summary["skipped_steps"] = self.guard.skipped  # train.nan_policy=skip_step: updates left out
        if self.guard.overflow_skipped:
            summary["overflow_skipped_steps"] = self.guard.overflow_skipped  # fp16: the loss scaler's skips
        if data.task_ids:
            summary["task_ids"] = data.task_ids  # multi-task prompt tuning: task name -> id
        if data.eval:
            summary["eval_loss"] = self.last_eval_loss
        if self.config.task == "classification":
            summary["labels"] = data.labels
            summary["pad_token_id"] = self.pad_id
            if self.last_eval is not None and self.last_eval.predictions is not None:
                summary.update(classification_summary(data, self.last_eval.predictions))
        return summary


def score_generations(
    config: TunelabConfig,
    run: RunDirectory,
    summary: dict[str, Any],
    progress: bool,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
) -> dict:
    """``eval.generate``: answer data.eval with the trained model, as it is in memory; eval.json
    beside the run, metrics in the summary."""
    from tunelab.evaluation.runner import evaluate_model, setup_for, summary_metrics

    if config.data.eval is None:
        log.warning("eval.generate needs a data.eval file to answer; nothing was generated")
        return summary
    setup = setup_for(str(run.path))
    setup.loaded = (model, tokenizer)
    report = evaluate_model(
        str(run.path), Path(config.data.eval), run.path, config.eval, progress=progress, setup=setup
    )
    summary = {**summary, **summary_metrics(report.metrics)}
    run.write_summary(summary)
    return summary


def save_artifact(
    run: RunDirectory, method: Method, model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, base: str
) -> None:
    """The trained artifact into the run folder, whole or not at all (staged, then moved in)."""
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
