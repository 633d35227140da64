"""Run a pipeline: train the stages in order, skip finished ones, stop at a failure, and after
each stage measure the current model on every stage's evaluation data (the earlier stages'
for forgetting, the later ones' for their before-training figure).

The forgetting table (rows: the starting model, then the model after each stage; columns: each
stage's evaluation data; cells: perplexity) shows the gain on the new domain next to what was
lost on the earlier ones. ``pipeline.json`` holds the same figures and each stage's status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.atomic import write_json_atomic
from tunelab.config.schema import ScratchModelConfig, TunelabConfig
from tunelab.errors import UserError, first_line
from tunelab.pipeline.spec import PipelineSpec, Stage, stage_config
from tunelab.run_files import is_run_folder, read_summary
from tunelab.runs.decision import RunAction, decide_run
from tunelab.runs.lock import FolderLock
from tunelab.training.interrupt import TrainingInterrupted

log = logging.getLogger("tunelab")


@dataclass
class PipelineReport:
    output_dir: Path
    stages: list[dict[str, Any]] = field(default_factory=list)
    start: dict[str, dict[str, float]] = field(default_factory=dict)  # eval set -> {loss, perplexity}

    def to_json(self) -> dict[str, Any]:
        return {"output_dir": str(self.output_dir), "start": self.start, "stages": self.stages}

    def table(self) -> str:
        columns = [stage["name"] for stage in self.stages if stage.get("has_eval")]
        header = "| model | " + " | ".join(f"ppl on {name}" for name in columns) + " |"
        lines = [header, "|---" * (len(columns) + 1) + "|"]
        rows = [("start", self.start)] + [(f"after {s['name']}", s.get("eval", {})) for s in self.stages]
        for label, figures in rows:
            cells = [f"{figures[name]['perplexity']:.3f}" if name in figures else "" for name in columns]
            if any(cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _evaluate(model_reference: str, configs: list[tuple[str, TunelabConfig]]) -> dict[str, dict[str, float]]:
    """The model's loss and perplexity on each given stage's evaluation data (by stage name)."""
    from tunelab.data.chat_template import ensure_chat_template
    from tunelab.data.collate import padding_id
    from tunelab.data.pipeline import prepare_data
    from tunelab.methods.loading import load_causal_lm
    from tunelab.models.loading import load_tokenizer
    from tunelab.training.evaluation import mean_token_loss, perplexity

    tokenizer = load_tokenizer(model_reference)
    ensure_chat_template(tokenizer)
    pad_id = padding_id(tokenizer)
    model = load_causal_lm(model_reference)
    figures = {}
    for name, config in configs:
        items = prepare_data(config.data, tokenizer, config.train.seed).eval
        loss = mean_token_loss(model, items, pad_id, config.train.batch_size)
        figures[name] = {"loss": loss, "perplexity": perplexity(loss)}
    return figures


def _has_eval(config: TunelabConfig) -> bool:
    return config.data.eval is not None or config.data.eval_split is not None


def _train_stage(stage: Stage, config: TunelabConfig, base_changed: bool) -> str:
    """Keep, resume or train a stage as ``runs.decision`` decides (trained again from the start when
    the stage it starts from was just retrained); returns its status."""
    from tunelab.training.recipe import train

    because = "the stage it starts from was trained again" if base_changed else None
    decision = decide_run(config, retrain_because=because)
    log.info(decision.log_line(f"stage {stage.name}", config.method.name))
    if decision.action is not RunAction.SKIP:
        train(decision.config_to_train(config), overwrite=decision.overwrite, progress=False)
    return decision.action.value


def run_pipeline(spec: PipelineSpec) -> PipelineReport:
    """Train every stage in order; figures go to ``pipeline.json`` after each stage. The pipeline
    folder is locked for the whole run."""
    with FolderLock(spec.output_dir, "pipeline folder"):
        return _run_stages(spec)


def _run_stages(spec: PipelineSpec) -> PipelineReport:
    from tunelab.methods.config_loading import check_training_inputs

    spec.output_dir.mkdir(parents=True, exist_ok=True)
    report = PipelineReport(spec.output_dir)
    report_file = spec.output_dir / "pipeline.json"
    first = stage_config(spec.stages[0])
    check_training_inputs(first)
    all_evaluated = [(stage.name, stage_config(stage)) for stage in spec.stages]
    if not isinstance(first.model, ScratchModelConfig):
        report.start = _evaluate(str(first.model), [(n, c) for n, c in all_evaluated if _has_eval(c)])
    previous: str | None = None
    for stage in spec.stages:
        config = stage_config(stage, model=previous)
        entry: dict[str, Any] = {
            "name": stage.name,
            "run_dir": str(stage.run_dir),
            "method": config.method.name,
            "starts_from": previous if stage.follows_previous else None,
            "has_eval": _has_eval(config),
        }
        report.stages.append(entry)
        try:
            check_training_inputs(config)
            base_changed = (
                stage.follows_previous
                and bool(report.stages[:-1])
                and (report.stages[-2]["status"] in (RunAction.TRAIN, RunAction.RESUME))
            )
            entry["status"] = _train_stage(stage, config, base_changed)
        except TrainingInterrupted as interruption:
            entry["status"] = "interrupted"
            write_json_atomic(report_file, report.to_json())
            raise TrainingInterrupted(
                f"pipeline interrupted in stage '{stage.name}' ({interruption}); earlier stages are kept; "
                "run the same tunelab pipeline to go on"
            ) from None
        except Exception as error:  # a failed stage stops the pipeline; earlier stages stay
            entry["status"] = "failed"
            entry["error"] = first_line(error)
            write_json_atomic(report_file, report.to_json())
            raise UserError(
                f"pipeline stopped: stage '{stage.name}' failed: {entry['error']} "
                f"(earlier stages are kept in {spec.output_dir})"
            ) from None
        summary = read_summary(stage.run_dir)
        entry.update({"train_loss": summary.get("train_loss"), "eval_loss": summary.get("eval_loss")})
        assert is_run_folder(stage.run_dir)
        # Every stage's evaluation data, the later ones too: a later stage's column then shows its
        # domain perplexity before that stage trained, beside the forgetting of the earlier ones.
        entry["eval"] = _evaluate(str(stage.run_dir), [(n, c) for n, c in all_evaluated if _has_eval(c)])
        write_json_atomic(report_file, report.to_json())
        previous = str(stage.run_dir)
    return report
