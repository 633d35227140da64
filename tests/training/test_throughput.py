"""training.throughput: the figures a run reports on its own speed, and how the bar prints them."""

from __future__ import annotations

import pytest

from tunelab.training.throughput import StepWork, Throughput, percent_text


def test_figures_add_up_over_steps_against_the_peak():
    window = Throughput()
    window.add(StepWork(targets=50, tokens=300, positions=400, flops=6e9), seconds=2.0)
    window.add(StepWork(targets=50, tokens=500, positions=600, flops=4e9), seconds=3.0)
    assert window.tokens_per_s() == pytest.approx(160.0)
    assert window.padding_share() == pytest.approx(0.2)
    assert window.figures(peak_flops=1e10)["mfu"] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("share", "text"),
    [(0.6442, "64%"), (0.1, "10%"), (0.041, "4.1%"), (0.0023, "0.23%"), (0.0, "0%"), (2.09, "209%")],
)
def test_small_shares_keep_two_digits_so_a_gpu_mfu_does_not_read_zero(share, text):
    assert percent_text(share) == text
