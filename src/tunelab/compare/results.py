"""One record per comparison entry, read from its run folder, and the files that hold them.

A record holds what a user decides by: status and error, method and its options, trainable and
total parameters, peak memory, training time and throughput, losses, the task metrics (every
metric-like value of the run's ``summary.json`` and ``eval.json``, whatever the task), the size of
the saved artifact, and the run folder. ``results.json`` has the records and the environment they
were measured in; ``results.csv`` has the same records flat, one row per entry.

Names beside PEFT's ``method_comparison`` (its result files' ``train_info`` / ``run_info``):
``PEFT_NAMES`` maps ours to theirs and is written into ``results.json``. Two differ in substance:
PEFT's ``accelerator_memory_max`` is reserved CUDA memory, our ``peak_memory_bytes`` allocated CUDA
memory (peak process memory on CPU); PEFT's ``file_size`` is the saved weights, which is our
``weights_file_bytes`` (``artifact_bytes`` also counts the tokenizer and configs).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tunelab.atomic import write_json_atomic, write_text_atomic
from tunelab.errors import UserError
from tunelab.run_files import RUN_CONFIG_FILE, RUN_SUMMARY_FILE, is_run_folder, read_run_config, read_summary
from tunelab.runs.run_directory import RunDirectory

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
EVAL_FILE = "eval.json"
FINISHED, FAILED, NOT_RUN = "finished", "failed", "not_run"

# Our field -> PEFT method_comparison's (train_info.* / run_info.*), to set our numbers beside theirs.
PEFT_NAMES = {
    "name": "run_info.experiment_name",
    "status": "train_info.status",  # ours: finished | failed | not_run; theirs: success | failed | canceled
    "error": "run_info.error_msg",
    "options": "run_info.peft_config",
    "trainable_params": "train_info.num_trainable_params",
    "total_params": "train_info.num_total_params",
    "peak_memory_bytes": "train_info.accelerator_memory_max",
    "train_time_s": "train_info.train_time",
    "weights_file_bytes": "train_info.file_size",
    "train_loss": "train_info.metrics[-1]['train loss']",
    "tokens_seen": "train_info.metrics[-1]['train total tokens']",
    "metrics.accuracy": "train_info.metrics[-1]['test accuracy']",
}

# summary.json keys that describe the run rather than measure the task.
RUN_FIGURES = {
    "method", "model", "task", "data_format", "trainable_params", "total_params", "trainable_pct",
    "train_time_s", "tokens_per_s", "peak_memory_bytes", "base_weights_bytes", "train_loss", "eval_loss",
    "steps", "epochs", "train_examples", "tokens_seen", "precision", "device", "processes", "task_ids",
    "pad_token_id", "method_prep_time_s", "eval_time_s", "skipped_steps",
    # how fast the run went (training.throughput): figures of the machine, not of the task
    "steady_tokens_per_s", "target_tokens_per_s", "padding_share", "mfu", "first_step_s", "matmul_peak_gflops",
    "threads",
}  # fmt: skip
COPIED_FIGURES = (
    "trainable_params", "total_params", "peak_memory_bytes", "train_time_s", "tokens_per_s",
    "train_loss", "eval_loss", "steps", "tokens_seen",
)  # fmt: skip
BOOKKEEPING_FILES = {RUN_CONFIG_FILE, "metrics.jsonl", RUN_SUMMARY_FILE, EVAL_FILE}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
HIGHER_IS_BETTER = {"classification": ("accuracy", "macro_f1"), "generation": ("json_f1", "exact_match", "rouge_l")}


@dataclass(frozen=True)
class Metric:
    """The figure a comparison is ranked by."""

    name: str
    higher_is_better: bool

    @property
    def label(self) -> str:
        return f"{self.name} ({'higher' if self.higher_is_better else 'lower'} is better)"


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record_figure(record: dict[str, Any], key: str) -> float | None:
    """A record's figure (``train_time_s``, ``peak_memory_bytes``, ...) as a float; None where absent."""
    value = record.get(key)
    return float(value) if is_number(value) else None


def _metric_like(value: Any) -> bool:
    """A number, or a mapping / table of numbers (per-class figures, a confusion matrix)."""
    if is_number(value):
        return True
    if isinstance(value, dict):
        return bool(value) and all(_metric_like(item) for item in value.values())
    if isinstance(value, list):
        return bool(value) and all(is_number(item) or (isinstance(item, list) and _metric_like(item)) for item in value)
    return False


def task_metrics(summary: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """Every metric-like value of summary.json beyond the run figures, then eval.json's (which win)."""
    found = {key: value for key, value in summary.items() if key not in RUN_FIGURES and _metric_like(value)}
    found.update({key: value for key, value in evaluation.items() if _metric_like(value)})
    return found


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    return loaded if isinstance(loaded, dict) else {}


def _artifact_files(run_dir: Path) -> list[Path]:
    """The run's saved model: every file but checkpoints, metrics, summary, config and hidden ones."""
    if not run_dir.is_dir():
        return []
    return [
        path
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
        and path.relative_to(run_dir).parts[0] not in ("checkpoints", *BOOKKEEPING_FILES)
        and not any(part.startswith(".") for part in path.relative_to(run_dir).parts)
    ]


def artifact_bytes(run_dir: Path) -> int:
    return sum(path.stat().st_size for path in _artifact_files(run_dir))


def weights_file_bytes(run_dir: Path) -> int:
    return sum(path.stat().st_size for path in _artifact_files(run_dir) if path.name.endswith(WEIGHT_SUFFIXES))


def _method_of(run_dir: Path, method: Any) -> tuple[str | None, dict[str, Any]]:
    """(method name, its options) from the given method subtree, else from the run's config.yaml."""
    if method is None and RunDirectory(run_dir).config_file.is_file():
        method = read_run_config(run_dir).get("method")
    if isinstance(method, str):
        return method, {}
    if isinstance(method, dict):
        return method.get("name"), {key: value for key, value in method.items() if key != "name"}
    return None, {}


def entry_record(
    name: str, run_dir: Path, status: str, error: str | None = None, method: Any = None, action: str | None = None
) -> dict[str, Any]:
    """The record of one entry: its run folder's figures where it finished, else status and error."""
    run_dir = Path(run_dir)
    method_name, options = _method_of(run_dir, method)
    record: dict[str, Any] = {"name": name, "status": status, "action": action or status, "error": error}
    record.update({"method": method_name, "options": options})
    summary = read_summary(run_dir) if status == FINISHED else {}
    record.update({key: summary.get(key) for key in COPIED_FIGURES})
    trainable, total = summary.get("trainable_params"), summary.get("total_params")
    record["trainable_share"] = trainable / total if is_number(trainable) and is_number(total) and total else None
    record["task"] = summary.get("task")
    record["metrics"] = task_metrics(summary, _read_json(run_dir / EVAL_FILE)) if status == FINISHED else {}
    record["artifact_bytes"] = artifact_bytes(run_dir) if status == FINISHED else None
    record["weights_file_bytes"] = weights_file_bytes(run_dir) if status == FINISHED else None
    record["lr"] = _trained_lr(run_dir) if status == FINISHED else None
    record["run_dir"] = str(run_dir)
    return record


def _trained_lr(run_dir: Path) -> float | None:
    """The learning rate the run trained with (its config.yaml: the method's own where none was set)."""
    if not RunDirectory(run_dir).config_file.is_file():
        return None
    value = (read_run_config(run_dir).get("train") or {}).get("lr")
    return float(value) if is_number(value) else None


def run_folder_record(run_dir: Path, name: str | None = None) -> dict[str, Any]:
    """The record of a plain, finished run folder (``tunelab report RUN_DIR``)."""
    if not is_run_folder(run_dir):
        raise UserError(f"{run_dir}: not a finished run folder (needs summary.json and config.yaml)")
    return entry_record(name or Path(run_dir).name, Path(run_dir), FINISHED, action="reported")


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_environment() -> dict[str, Any]:
    """Where the figures were measured: Python, platform, library versions, CPU and GPU."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **{name: _package_version(name) for name in ("tunelab", "torch", "transformers", "peft", "accelerate")},
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
    }


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted columns; lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        column = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{column}."))
        elif isinstance(value, list):
            flat[column] = json.dumps(value)
        else:
            flat[column] = value
    return flat


def results_csv_text(records: list[dict[str, Any]]) -> str:
    rows = [flatten(record) for record in records]
    columns: list[str] = []
    for row in rows:
        columns += [column for column in row if column not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(folder: Path, records: list[dict[str, Any]], environment: dict[str, Any]) -> tuple[Path, Path]:
    """``results.json`` and ``results.csv`` in ``folder``, each written atomically."""
    folder = Path(folder)
    payload = {"environment": environment, "peft_names": PEFT_NAMES, "records": records}
    write_json_atomic(folder / RESULTS_JSON, payload)
    write_text_atomic(folder / RESULTS_CSV, results_csv_text(records))
    return folder / RESULTS_JSON, folder / RESULTS_CSV


def read_results(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(records, environment) of a comparison folder's results.json."""
    payload = _read_json(Path(folder) / RESULTS_JSON)
    records = payload.get("records")
    if not isinstance(records, list):
        raise UserError(f"{folder}: no comparison results (results.json with records)")
    return records, payload.get("environment") or {}


def primary_metric(records: list[dict[str, Any]]) -> Metric | None:
    """The task metric to rank by: accuracy, macro_f1 (classification); json_f1, exact_match, rouge_l
    (generation); else eval_loss, else train_loss (lower is better). The first one any finished
    entry has is chosen."""
    finished = [record for record in records if record.get("status") == FINISHED]
    classification = any(record.get("task") == "classification" for record in finished)
    first, second = ("classification", "generation") if classification else ("generation", "classification")
    for name in HIGHER_IS_BETTER[first] + HIGHER_IS_BETTER[second]:
        if any(is_number(record.get("metrics", {}).get(name)) for record in finished):
            return Metric(name, higher_is_better=True)
    for name in ("eval_loss", "train_loss"):
        if any(is_number(record.get(name)) for record in finished):
            return Metric(name, higher_is_better=False)
    return None


def metric_value(record: dict[str, Any], metric: Metric | None) -> float | None:
    if metric is None:
        return None
    value = record.get("metrics", {}).get(metric.name, record.get(metric.name))
    return float(value) if is_number(value) else None


def sort_records(records: list[dict[str, Any]], metric: Metric | None) -> list[dict[str, Any]]:
    """Best first by ``metric``; entries without a value next; failed and not-run entries last."""

    def key(record: dict[str, Any]) -> tuple[int, float]:
        value = metric_value(record, metric)
        if record.get("status") != FINISHED:
            return (3 if record.get("status") == FAILED else 2, 0.0)
        if value is None or metric is None:
            return (1, 0.0)
        return (0, -value if metric.higher_is_better else value)

    return sorted(records, key=key)


def _relocated(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A comparison folder that moved: its entries' runs are still under ``runs/<name>``."""
    moved = folder / "runs" / str(record.get("name"))
    if not Path(str(record.get("run_dir"))).is_dir() and moved.is_dir():
        return {**record, "run_dir": str(moved.absolute())}
    return record


def _unique_names(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    unique = []
    for record in records:
        name = str(record.get("name"))
        seen[name] = seen.get(name, 0) + 1
        unique.append(record if seen[name] == 1 else {**record, "name": f"{name} ({seen[name]})"})
    return unique


def load_records(folders: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records and environment of comparison folders (results.json) and finished run folders.

    With several folders, a comparison's entries are named ``folder/entry``. Run folders carry no
    environment; where no comparison is among the folders, the environment says so.
    """
    records: list[dict[str, Any]] = []
    environment: dict[str, Any] = {}
    for folder in map(Path, folders):
        if (folder / RESULTS_JSON).is_file():
            found, found_environment = read_results(folder)
            prefix = f"{folder.absolute().name}/" if len(folders) > 1 else ""
            records += [{**_relocated(r, folder), "name": f"{prefix}{r.get('name')}"} for r in found]
            environment = environment or found_environment
        elif RunDirectory(folder).summary_file.is_file():
            records.append(run_folder_record(folder))
        else:
            raise UserError(f"{folder}: neither a comparison folder (results.json) nor a finished run (summary.json)")
    return _unique_names(records), environment or {"note": "reported from run folders; environment not recorded"}
