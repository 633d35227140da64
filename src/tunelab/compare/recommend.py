"""The comparison's answer in a few lines, computed from its records and never written by hand.

- the best entry by the task metric;
- among the entries within a tolerance of it (one point on a 0-1 metric such as accuracy; 1% of
  the value for others, such as a loss), the cheapest by trainable parameters, by training time
  and by peak memory;
- the Pareto front of the metric against each of those costs: the entries no other entry beats on
  both the metric and the cost.

``tunelab compare`` prints these lines after its table, and report.html opens with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.compare.results import FINISHED, Metric, metric_value, primary_metric, record_figure, sort_records

TOLERANCE = 0.01
MIB = 2**20
# (record key, what it costs, how a value reads)
COSTS = (
    ("trainable_params", "fewest trainable parameters", lambda v: f"{v:,.0f} trainable"),
    ("train_time_s", "fastest to train", lambda v: f"{v:,.1f} s"),
    ("peak_memory_bytes", "least peak memory", lambda v: f"{v / MIB:,.0f} MiB"),
)


@dataclass
class Recommendation:
    metric: Metric
    best: str
    best_value: float
    tolerance: float
    cheapest: list[tuple[str, str, float, str]] = field(default_factory=list)  # (what, entry, metric, cost)
    pareto: dict[str, list[str]] = field(default_factory=dict)  # cost key -> entries on the front

    def lines(self) -> list[str]:
        name = self.metric.name
        lines = [f"best: {self.best} ({name} {self.best_value:.4f})"]
        within = f"within {self.tolerance:.3g} {name} of it"
        for what, entry, value, cost in self.cheapest:
            lines.append(f"{within}, {what}: {entry} ({name} {value:.4f}, {cost})")
        for key, entries in self.pareto.items():
            lines.append(f"Pareto front of {name} against {key}: {', '.join(entries)}")
        return lines


def _better(a: float, b: float, metric: Metric) -> bool:
    return a > b if metric.higher_is_better else a < b


def pareto_front(points: list[tuple[str, float, float]], metric: Metric) -> list[str]:
    """Names of the (name, metric, cost) points that no other point dominates (at least as good on
    both, better on one), best metric first."""
    front = []
    for name, value, cost in points:
        dominated = any(
            (other_value == value or _better(other_value, value, metric))
            and other_cost <= cost
            and (_better(other_value, value, metric) or other_cost < cost)
            for _, other_value, other_cost in points
        )
        if not dominated:
            front.append((name, value))
    front.sort(key=lambda pair: -pair[1] if metric.higher_is_better else pair[1])
    return [name for name, _ in front]


def recommend(records: list[dict[str, Any]], tolerance: float = TOLERANCE) -> Recommendation | None:
    """The recommendation, or None where no finished entry has a metric to rank by."""
    metric = primary_metric(records)
    scored = [
        (record, metric_value(record, metric))
        for record in records
        if record.get("status") == FINISHED and metric_value(record, metric) is not None
    ]
    if metric is None or not scored:
        return None
    best_record = sort_records([record for record, _ in scored], metric)[0]
    best_value = metric_value(best_record, metric)
    allowed = tolerance if 0.0 <= best_value <= 1.0 else tolerance * abs(best_value)
    near = [(record, value) for record, value in scored if abs(value - best_value) <= allowed + 1e-12]
    result = Recommendation(metric, str(best_record.get("name")), best_value, allowed)
    for key, what, shown in COSTS:
        costed = [(record, value, cost) for record, value in near if (cost := record_figure(record, key)) is not None]
        if costed:
            record, value, cost = min(
                costed, key=lambda item: (item[2], -item[1] if metric.higher_is_better else item[1])
            )
            result.cheapest.append((what, str(record.get("name")), value, shown(cost)))
        points = [(str(r.get("name")), v, cost) for r, v in scored if (cost := record_figure(r, key)) is not None]
        if len(points) > 1:
            result.pareto[key] = pareto_front(points, metric)
    return result
