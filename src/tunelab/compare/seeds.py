"""Several seeds per entry: one row per entry with the mean and standard deviation of its metric,
and which entries are tied with the best (their mean +- one standard deviation overlaps the best's).

results.json keeps every seed's run; this module only folds them for the table, the report's
recommendation and ``tunelab compare``'s printout. Entries trained with one seed pass through.
"""

from __future__ import annotations

import statistics
from typing import Any

from tunelab.compare.results import (
    FAILED,
    FINISHED,
    Metric,
    is_number,
    metric_value,
    primary_metric,
    record_figure,
    sort_records,
)

AVERAGED = (
    "trainable_params",
    "trainable_share",
    "peak_memory_bytes",
    "train_time_s",
    "tokens_seen",
    "tokens_per_s",
    "lr",
)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _numbers(records: list[dict[str, Any]], key: str) -> list[float]:
    return [value for record in records if (value := record_figure(record, key)) is not None]


def _fold(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    finished = [run for run in runs if run.get("status") == FINISHED]
    folded: dict[str, Any] = {
        "name": name,
        "method": runs[0].get("method"),
        "task": runs[0].get("task"),
        "seeds": [run.get("seed") for run in runs],
        "status": FINISHED if len(finished) == len(runs) else FAILED,
    }
    if len(finished) < len(runs):
        errors = [f"seed {run.get('seed')}: {run.get('error')}" for run in runs if run.get("status") != FINISHED]
        folded["error"] = "; ".join(errors)
    metric_names = dict.fromkeys(key for run in finished for key in (run.get("metrics") or {}))
    metrics, spread = {}, {}
    for key in metric_names:
        values = [float(v) for v in ((run.get("metrics") or {}).get(key) for run in finished) if is_number(v)]
        if values:
            metrics[key] = statistics.fmean(values)
            spread[key] = statistics.stdev(values) if len(values) > 1 else 0.0
    folded["metrics"], folded["metric_std"] = metrics, spread
    for key in (*AVERAGED, "train_loss", "eval_loss"):
        mean = _mean(_numbers(finished, key))
        if mean is not None:
            folded[key] = mean
    for key in ("train_loss", "eval_loss"):
        values = _numbers(finished, key)
        if len(values) > 1:
            spread[key] = statistics.stdev(values)
    return folded


def _spread(record: dict[str, Any], metric: Metric) -> float:
    return float((record.get("metric_std") or {}).get(metric.name, 0.0))


def fold_seeds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per entry (seed runs folded, in the entries' order), each finished one marked
    ``tied`` where its interval overlaps the best entry's."""
    groups: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    for record in records:
        key = str(record.get("entry") or record.get("name"))
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(record)
    folded = [_fold(key, groups[key]) if groups[key][0].get("entry") else dict(groups[key][0]) for key in order]
    metric = primary_metric(folded)
    scored = [(r, metric_value(r, metric)) for r in folded if r.get("status") == FINISHED]
    scored = [(r, v) for r, v in scored if v is not None]
    if metric is None or not scored or not any("metric_std" in r for r, _ in scored):
        return folded
    best = sort_records([record for record, _ in scored], metric)[0]
    best_value = metric_value(best, metric)
    low, high = best_value - _spread(best, metric), best_value + _spread(best, metric)
    for record, value in scored:
        if record is not best:
            spread = _spread(record, metric)
            record["tied"] = value - spread <= high and value + spread >= low
    return folded
