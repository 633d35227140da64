"""The figures a run reports on its own speed: real and target tokens/s, padding share and MFU.

Summed over an interval (one metrics line, or the whole run) and over processes, so the progress
bar, metrics.jsonl and summary.json give the same figures the benchmarks compute.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StepWork:
    """What one optimizer step processed, summed over its micro-batches and processes."""

    targets: int = 0  # tokens (or examples) the loss is taken on
    tokens: int = 0  # real tokens, no padding
    positions: int = 0  # positions computed, padding included
    flops: float = 0.0  # training FLOPs of the useful work (training.flops)


@dataclass
class Throughput:
    """StepWork and seconds, added up over an interval."""

    targets: int = 0
    tokens: int = 0
    positions: int = 0
    flops: float = 0.0
    seconds: float = 0.0

    def add(self, work: StepWork, seconds: float) -> None:
        self.targets += work.targets
        self.tokens += work.tokens
        self.positions += work.positions
        self.flops += work.flops
        self.seconds += seconds

    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    def target_tokens_per_s(self) -> float:
        return self.targets / max(self.seconds, 1e-9)

    def padding_share(self) -> float:
        """Share of the computed positions that were padding."""
        return 1.0 - self.tokens / self.positions if self.positions else 0.0

    def mfu(self, peak_flops: float) -> float:
        """Training FLOPs per second over the device's measured matmul rate."""
        return self.flops / max(self.seconds, 1e-9) / peak_flops if peak_flops > 0 else 0.0

    def figures(self, peak_flops: float) -> dict[str, float]:
        return {
            "target_tokens_per_s": self.target_tokens_per_s(),
            "padding_share": round(self.padding_share(), 4),
            "mfu": round(self.mfu(peak_flops), 4),
        }


def percent_text(share: float) -> str:
    """A share as the progress bar shows it: whole percent from 10%, two significant digits below,
    so a small model's MFU on a GPU (0.2-0.7% on an H200, bench/README.md) does not read 0%."""
    return f"{share:.0%}" if share >= 0.1 else f"{100 * share:.2g}%"
