"""A record per entry from its run folder: the figures, every task metric whatever its name, the
artifact's size without checkpoints; results.json / results.csv; the metric a comparison ranks by."""

from __future__ import annotations

import csv
import json

import pytest
from fake_runs import TOKENIZER_BYTES, WEIGHTS_BYTES, failed_record, finished_record, make_run

from tunelab.compare.results import (
    PEFT_NAMES,
    collect_environment,
    load_records,
    metric_value,
    primary_metric,
    read_results,
    sort_records,
    task_metrics,
    write_results,
)
from tunelab.errors import UserError

CLASSIFICATION = {
    "task": "classification",
    "accuracy": 0.75,
    "macro_f1": 0.7,
    "per_class": {"pos": {"f1": 0.8}, "neg": {"f1": 0.6}},
    "confusion_matrix": [[3, 1], [1, 3]],
}


def test_a_finished_entry_has_its_figures_metrics_and_artifact_size(tmp_path):
    record = finished_record(
        tmp_path, "lora", extra_summary=CLASSIFICATION, evaluation={"json_f1": 0.5, "samples": ["text"]}
    )

    assert (record["status"], record["method"], record["options"]) == ("finished", "lora", {"r": 4})
    assert (record["trainable_params"], record["total_params"], record["trainable_share"]) == (100, 10_000, 0.01)
    assert record["steps"] == 3 and record["train_loss"] == 2.0 and record["peak_memory_bytes"] == 300 * 2**20
    # every metric-like value, from summary.json and eval.json; text and run figures are not metrics
    assert record["metrics"] == {**{k: v for k, v in CLASSIFICATION.items() if k != "task"}, "json_f1": 0.5}
    # the saved model without checkpoints, metrics, summary, config; the weights alone as PEFT counts them
    assert record["artifact_bytes"] == WEIGHTS_BYTES + TOKENIZER_BYTES
    assert record["weights_file_bytes"] == WEIGHTS_BYTES


def test_a_failed_entry_keeps_its_error_and_method(tmp_path):
    record = failed_record(tmp_path, "broken", "method.layers=99 but the model has only 2 blocks")
    assert (record["status"], record["method"], record["options"]) == ("failed", "last_layers", {"layers": 99})
    assert record["error"].startswith("method.layers=99")
    assert record["trainable_params"] is None and record["metrics"] == {}


def test_results_json_and_flat_csv_hold_one_record_per_entry(tmp_path):
    records = [
        finished_record(tmp_path, "clf", extra_summary=CLASSIFICATION),
        failed_record(tmp_path, "broken", "boom, with a comma"),
    ]
    environment = collect_environment()
    json_path, csv_path = write_results(tmp_path, records, environment)

    assert read_results(tmp_path) == (records, environment)
    assert json.loads(json_path.read_text())["peft_names"] == PEFT_NAMES
    assert {"python", "platform", "torch", "transformers", "peft", "accelerate", "cpu", "gpu", "cuda"} <= set(
        environment
    )
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [row["name"] for row in rows] == ["clf", "broken"]
    assert rows[0]["metrics.per_class.pos.f1"] == "0.8" and rows[0]["options.r"] == "4"
    assert json.loads(rows[0]["metrics.confusion_matrix"]) == [[3, 1], [1, 3]]
    assert rows[1]["error"] == "boom, with a comma" and rows[1]["metrics.per_class.pos.f1"] == ""
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"task": "classification", "accuracy": 0.5, "macro_f1": 0.4, "json_f1": 0.1}, ("accuracy", True)),
        ({"task": "classification", "macro_f1": 0.4}, ("macro_f1", True)),
        ({"json_f1": 0.3, "exact_match": 0.1, "accuracy": 0.2}, ("json_f1", True)),
        ({"exact_match": 0.1, "rouge_l": 0.2}, ("exact_match", True)),
        ({"rouge_l": 0.2}, ("rouge_l", True)),
        ({}, ("eval_loss", False)),
    ],
)
def test_the_primary_metric_follows_the_task(tmp_path, metrics, expected):
    record = finished_record(tmp_path, "run", extra_summary=metrics)
    metric = primary_metric([record, failed_record(tmp_path, "broken", "x")])
    assert (metric.name, metric.higher_is_better) == expected


def test_without_eval_loss_the_train_loss_ranks_and_without_finished_entries_nothing_does(tmp_path):
    record = finished_record(tmp_path, "run")
    record["eval_loss"] = None
    assert primary_metric([record]).name == "train_loss"
    assert primary_metric([failed_record(tmp_path, "broken", "x")]) is None


def test_records_sort_best_first_with_failed_entries_last(tmp_path):
    records = [
        failed_record(tmp_path, "broken", "x"),
        finished_record(tmp_path, "worse", losses=(3.0, 2.8)),
        finished_record(tmp_path, "better", losses=(3.0, 1.0)),
    ]
    metric = primary_metric(records)
    assert metric.name == "eval_loss"
    assert [r["name"] for r in sort_records(records, metric)] == ["better", "worse", "broken"]
    assert metric_value(records[2], metric) == pytest.approx(1.1)

    for record, accuracy in zip(records[1:], (0.9, 0.2), strict=True):
        record["metrics"]["accuracy"] = accuracy
    assert [r["name"] for r in sort_records(records, primary_metric(records))] == ["worse", "better", "broken"]


def test_report_inputs_are_comparison_folders_or_finished_run_folders(tmp_path):
    comparison = tmp_path / "cmp"
    records = [finished_record(comparison / "runs", "lora"), failed_record(comparison / "runs", "broken", "x")]
    write_results(comparison, records, {"python": "3"})
    plain = make_run(tmp_path / "lora")

    found, environment = load_records([comparison])
    assert [r["name"] for r in found] == ["lora", "broken"] and environment == {"python": "3"}
    found, _ = load_records([comparison, plain])
    assert [r["name"] for r in found] == ["cmp/lora", "cmp/broken", "lora"]
    found, environment = load_records([plain, plain])
    assert [r["name"] for r in found] == ["lora", "lora (2)"] and "note" in environment
    with pytest.raises(UserError, match="neither a comparison folder"):
        load_records([tmp_path])


def test_speed_figures_are_not_task_metrics():
    summary = {"accuracy": 0.9, "mfu": 0.3, "padding_share": 0.1, "threads": 2, "steady_tokens_per_s": 50.0}
    assert task_metrics(summary, {}) == {"accuracy": 0.9}
