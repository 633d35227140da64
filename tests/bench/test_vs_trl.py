"""bench/vs_trl.py's bookkeeping: steady rates, padding share, medians, the best-of ratios and the table.

No model trains here: the runs are written by hand, as the child processes would report them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "vs_trl.py"


@pytest.fixture(scope="module")
def vs_trl():
    spec = importlib.util.spec_from_file_location("vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vs_trl"] = module  # its dataclasses look their module up while the script loads
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("vs_trl", None)


def run(tokens_per_step: list[int], seconds: list[float], peak_mib: int, positions: int = 2048) -> dict:
    steps = [
        {"step": i + 1, "loss": 2.0 - 0.1 * i, "tokens": tokens, "positions": positions, "seconds": s}
        for i, (tokens, s) in enumerate(zip(tokens_per_step, seconds, strict=True))
    ]
    return {"steps": steps, "peak_memory_bytes": peak_mib * 2**20, "padding_share": 0.5, "process_seconds": 1.0}


def test_steady_rate_leaves_out_the_warm_up_steps(vs_trl):
    figures = vs_trl.steady(run([1000, 1000, 1000], [10.0, 2.0, 2.0], 100)["steps"], warmup=1)
    assert figures["tokens_per_s"] == pytest.approx(500.0)
    assert figures["tokens_per_s_all_steps"] == pytest.approx(3000 / 14)
    assert figures["warmup_seconds"] == pytest.approx(10.0)


def test_padding_share_is_over_every_position_computed(vs_trl):
    steps = [{"tokens": 1000, "positions": 2000}, {"tokens": 1500, "positions": 2000}]
    assert vs_trl.padding_share(steps) == pytest.approx(1 - 2500 / 4000)


def test_every_default_row_is_a_known_setting(vs_trl):
    known = {setting.name for setting in vs_trl.settings(lever_threads=1)}
    assert set(vs_trl.DEFAULT_CONFIGS.split(",")) <= known
    assert vs_trl.BASELINE in vs_trl.DEFAULT_CONFIGS.split(",")


def test_ratios_take_each_sides_best_and_a_refused_row_stays_in_the_table(vs_trl):
    by_name = {setting.name: setting for setting in vs_trl.settings(lever_threads=1)}
    results = {
        "trl-padding": [run([1000] * 3, [1, 4, 4], 800), run([1000] * 3, [1, 5, 5], 900)],
        "trl-packing": [run([2000] * 3, [1, 5, 5], 1000)],
        "tunelab-padding": [run([1000] * 3, [1, 2, 2], 400)],
        "tunelab-packing": [run([2000] * 3, [1, 2, 2], 450)],
        "tunelab-bf16": [run([1000] * 3, [1, 1, 1], 300)],
        "tunelab-compile": [{"refused": "config error: train.compile: needs a C++ compiler"}],
    }
    rows = [vs_trl.aggregate(by_name[name], found, 1, "fp32") for name, found in results.items()]
    assert rows[0]["tokens_per_s"] == pytest.approx(225.0)  # median of 250 and 200
    assert rows[0]["peak_memory_bytes"] == 850 * 2**20
    ratios = vs_trl.ratios(rows)
    speed = ratios["tunelab best / TRL best, real tokens/s"]
    assert (speed["of"], speed["over"]) == ("tunelab-packing", "trl-packing")  # bf16 is not an fp32 best
    assert speed["value"] == pytest.approx(1000 / 400)
    leanest = ratios["tunelab leanest / TRL leanest, peak RSS"]
    assert (leanest["of"], leanest["over"]) == ("tunelab-padding", "trl-padding")
    fastest = ratios["tunelab fastest / TRL fastest, peak RSS"]  # what the fastest of each side costs
    assert (fastest["of"], fastest["over"]) == ("tunelab-packing", "trl-packing")
    assert fastest["value"] == pytest.approx(450 / 1000)
    assert ratios["tunelab bf16 / tunelab fp32, real tokens/s"]["value"] == pytest.approx(2.0)
    table = vs_trl.markdown_table(rows, steps=3, warmup=1)
    assert "refused: config error: train.compile: needs a C++ compiler" in table
    lines = vs_trl.ratio_lines(ratios)
    assert any("real tokens/s: x2.500" in line and "target >= 2.0: met" in line for line in lines)
    assert any("leanest, peak RSS: x0.471" in line and "target" not in line for line in lines)
    assert any("fastest, peak RSS: x0.450" in line and "target <= 0.5: met" in line for line in lines)
    assert any(
        "bf16 / tunelab fp32, real tokens/s: x2.000" in line and "target >= 3.0: NOT met" in line for line in lines
    )
