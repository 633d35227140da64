"""``tunelab train`` for the strategies that train nothing (zeroshot, fewshot, rag).

There is no loop: the run folder gets the config, a summary with ``trainable_params: 0`` and,
where there is ``data.eval``, the scored answers (eval.json, predictions.jsonl) with the metrics
copied into summary.json. Memory and time are those of answering the evaluation set, which is
what these strategies cost.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.config.schema import TunelabConfig
from tunelab.methods.in_context import InContextStrategy
from tunelab.models.resolve import gguf_record
from tunelab.runs.run_directory import RunDirectory

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger("tunelab")


def run_in_context(config: TunelabConfig, method: InContextStrategy, overwrite: bool = False, progress: bool = True):
    """``train`` for an in-context strategy: ``config`` already checked, its paths absolute, its folder locked."""
    import torch

    from tunelab.evaluation.runner import EvalSetup, evaluate_model, summary_metrics
    from tunelab.methods.loading import load_model
    from tunelab.models.size import count_parameters, weights_bytes
    from tunelab.training.measure import peak_memory_bytes, reset_peak_memory
    from tunelab.training.result import TrainResult

    if config.train.report_to:
        from tunelab.training.tracking import check_trackers

        check_trackers(config.train.report_to)  # before any work, not after the evaluation
    plain = config.to_plain()
    run = RunDirectory(config.output_dir)
    run.check_can_start(plain, resume=False, overwrite=overwrite)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reset_peak_memory(device)
    started = time.perf_counter()
    model = load_model(str(config.model))
    _, total = count_parameters(model)
    summary = {
        "method": method.name,
        "model": plain["model"],
        "task": config.task,
        "trainable_params": 0,
        "total_params": total,
        "trainable_pct": 0.0,
        "train_time_s": 0.0,
        "tokens_per_s": 0.0,
        "base_weights_bytes": weights_bytes(model),
        "steps": 0,
        "tokens_seen": 0,
        "precision": loaded_precision(model),  # nothing trains: the dtype the model answers in
        "device": str(device),
        **gguf_record(config.model),
    }
    del model
    run.start(plain, overwrite=overwrite)
    if config.data.eval is not None:
        # evaluated before summary.json exists: an interruption here leaves an unfinished run,
        # which the next tunelab compare evaluates again instead of counting it as done
        setup = EvalSetup(str(config.model), config)
        report = evaluate_model(
            str(run.path), Path(config.data.eval), run.path, config.eval, progress=progress, setup=setup
        )
        summary.update(summary_metrics(report.metrics))
        if "labels" in report.metrics:
            summary["labels"] = report.metrics["labels"]
    else:
        log.warning(f"method {method.name}: no data.eval, so nothing was scored; run tunelab eval on a data file")
    summary["eval_time_s"] = round(time.perf_counter() - started, 3)
    summary["peak_memory_bytes"] = peak_memory_bytes(device)
    run.write_summary(summary)  # last: its presence marks the run finished
    if config.train.report_to:  # one tracked run per strategy, trained or not: its figures, no curve
        from tunelab.training.accelerator import new_accelerator
        from tunelab.training.tracking import RunTracking, accelerator_options

        tracking = RunTracking()
        accelerator = new_accelerator(config.train.precision, accelerator_options(config.train.report_to, run.path))
        tracking.start(accelerator, plain, run.path, config.train.report_project)
        tracking.finish(summary)
    log.info(f"done: {run.path} ({method.name}: nothing trained)")
    return TrainResult(summary, run.path, None)


def loaded_precision(model: nn.Module) -> str:
    """fp32, bf16 or fp16: the dtype of ``model``'s weights, as train.precision names it."""
    from tunelab.training.flops import PRECISION_DTYPE

    dtype = next(model.parameters()).dtype
    return next((name for name, known in PRECISION_DTYPE.items() if known == dtype), "fp32")
