"""A comparison of lora, ia3 and a failing entry on the tiny Llama, end to end: one record each
(the failure's error kept, the comparison going on), the report; a second run trains nothing but
retries the failure; an interrupted entry resumes from its checkpoint; ``only`` retrains one entry.

One comparison is trained per module (two steps per entry); each test brings it to the state it
needs and checks what a run of the comparison did to it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import make_records, write_jsonl
from tunelab.compare.report import PLOT_FILES
from tunelab.compare.runner import ComparisonResult, run_comparison
from tunelab.compare.spec import load_comparison
from tunelab.training.checkpoint import list_checkpoints


@pytest.fixture(scope="module")
def comparison_file(tiny_llama, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("compare")
    data = write_jsonl(folder / "train.jsonl", make_records(24))
    spec = {
        "output_dir": str(folder / "out"),
        "base": {
            "model": str(tiny_llama),
            "data": {"train": str(data), "eval_split": 0.2},
            "train": {"batch_size": 4, "lr": 1e-3, "log_every": 1},
        },
        "budget": {"steps": 2},
        "entries": [
            {"name": "lora", "method": {"name": "lora", "r": 4}},
            {"name": "ia3", "method": "ia3"},
            {"name": "broken", "method": {"name": "last_layers", "layers": 99}},  # the tiny model has 2 blocks
        ],
    }
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first_run(comparison_file) -> ComparisonResult:
    return run_comparison(load_comparison(comparison_file), progress=False)


def compare(comparison_file: Path, only: str | None = None) -> dict[str, dict]:
    """Run the comparison again; its records by name."""
    result = run_comparison(load_comparison(comparison_file), only=only, progress=False)
    return {record["name"]: record for record in result.records}


def stamps(result: ComparisonResult) -> dict[str, tuple[bytes, int]]:
    """Each finished entry's summary.json: (bytes, modification time)."""
    files = {name: result.output_dir / "runs" / name / "summary.json" for name in ("lora", "ia3")}
    return {name: (path.read_bytes(), path.stat().st_mtime_ns) for name, path in files.items()}


def test_every_entry_has_a_record_and_the_failure_does_not_stop_the_others(first_run):
    records = {record["name"]: record for record in first_run.records}
    assert list(records) == ["lora", "ia3", "broken"]

    broken = records["broken"]
    assert (broken["status"], broken["method"]) == ("failed", "last_layers")
    assert broken["error"] == "method.layers=99 but the model has only 2 blocks"
    for name in ("lora", "ia3"):
        record = records[name]
        assert (record["status"], record["action"], record["method"]) == ("finished", "trained", name)
        assert record["steps"] == 2
        assert 0 < record["trainable_params"] < record["total_params"]
        assert 0 < record["trainable_share"] < 1
        assert record["peak_memory_bytes"] > 0 and record["train_time_s"] > 0 and record["tokens_per_s"] > 0
        assert math.isfinite(record["train_loss"]) and math.isfinite(record["eval_loss"])
        assert record["artifact_bytes"] > record["weights_file_bytes"] > 0
    assert records["lora"]["options"]["r"] == 4

    saved = json.loads(first_run.results_json.read_text(encoding="utf-8"))
    assert saved["records"] == first_run.records and saved["environment"]["torch"]
    rows = list(csv.DictReader(first_run.results_csv.open(encoding="utf-8")))
    assert [row["name"] for row in rows] == ["lora", "ia3", "broken"] and rows[2]["error"] == broken["error"]
    assert first_run.report_html.is_file()
    assert all((first_run.output_dir / name).is_file() for name in PLOT_FILES)


def test_a_second_run_trains_nothing_and_retries_the_failure(first_run, comparison_file):
    before = stamps(first_run)
    records = compare(comparison_file)

    assert [r["action"] for r in records.values()] == ["skipped", "skipped", "failed"]
    assert records["lora"]["status"] == records["ia3"]["status"] == "finished"
    assert stamps(first_run) == before


def test_an_interrupted_entry_resumes_from_its_checkpoint(first_run, comparison_file, caplog):
    run_dir = first_run.output_dir / "runs" / "ia3"
    first_step = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0]
    lora_before = stamps(first_run)["lora"]
    # as if killed after step 1: its checkpoint is there, step 2's and the summary are not
    (run_dir / "summary.json").unlink()
    first, last = list_checkpoints(run_dir / "checkpoints")
    shutil.rmtree(last)

    with caplog.at_level(logging.INFO, logger="tunelab"):
        records = compare(comparison_file)

    assert records["ia3"]["action"] == "resumed" and records["ia3"]["steps"] == 2
    assert f"resumed from {first.name} (step 1" in caplog.text
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2] and lines[0] == first_step  # step 1 not redone
    assert stamps(first_run)["lora"] == lora_before


def test_only_retrains_that_entry_and_leaves_the_others(first_run, comparison_file):
    before = stamps(first_run)
    records = compare(comparison_file, only="lora")

    assert [r["action"] for r in records.values()] == ["trained", "skipped", "not_run"]
    assert records["broken"]["status"] == "failed"  # its earlier record, kept
    after = stamps(first_run)
    assert after["lora"][1] != before["lora"][1] and after["ia3"] == before["ia3"]
