"""The recommendation is computed from the records: the best entry, the cheapest within a point of
it by each cost, and the Pareto front of the metric against each cost."""

from __future__ import annotations

from tunelab.compare.recommend import pareto_front, recommend
from tunelab.compare.results import FAILED, FINISHED, Metric

MIB = 2**20


def record(name, accuracy, trainable, seconds, mib, status=FINISHED):
    return {
        "name": name,
        "status": status,
        "task": "classification",
        "metrics": {"accuracy": accuracy},
        "trainable_params": trainable,
        "train_time_s": seconds,
        "peak_memory_bytes": mib * MIB,
    }


RECORDS = [
    record("full", 0.850, 22_000_000, 30.0, 1200),
    record("lora", 0.845, 480_000, 17.0, 1000),
    record("adapter", 0.842, 375_000, 19.0, 900),
    record("features", 0.700, 1_160, 2.0, 600),
    record("broken", 0.990, 10, 0.1, 1, status=FAILED),
]


def test_the_best_and_the_cheapest_within_a_point_of_it():
    answer = recommend(RECORDS)
    assert (answer.best, answer.best_value) == ("full", 0.85)
    cheapest = {what: entry for what, entry, _, _ in answer.cheapest}
    assert cheapest == {
        "fewest trainable parameters": "adapter",
        "fastest to train": "lora",
        "least peak memory": "adapter",
    }
    lines = answer.lines()
    assert lines[0] == "best: full (accuracy 0.8500)"
    assert (
        "within 0.01 accuracy of it, fewest trainable parameters: adapter (accuracy 0.8420, 375,000 trainable)" in lines
    )


def test_a_wider_tolerance_lets_a_cheaper_entry_in():
    cheapest = {what: entry for what, entry, _, _ in recommend(RECORDS, tolerance=0.2).cheapest}
    assert cheapest["fewest trainable parameters"] == "features"


def test_the_pareto_front_keeps_only_undominated_entries():
    answer = recommend(RECORDS)
    assert answer.pareto["trainable_params"] == ["full", "lora", "adapter", "features"]
    points = [("a", 0.9, 10.0), ("b", 0.8, 20.0), ("c", 0.9, 5.0), ("d", 0.5, 1.0)]
    assert pareto_front(points, Metric("accuracy", True)) == ["c", "d"]
    losses = [("a", 1.0, 10.0), ("b", 2.0, 5.0), ("c", 1.5, 20.0)]
    assert pareto_front(losses, Metric("eval_loss", False)) == ["a", "b"]


def test_no_finished_entry_means_no_recommendation():
    assert recommend([record("broken", 0.9, 1, 1.0, 1, status=FAILED)]) is None
