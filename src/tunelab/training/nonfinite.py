"""The NaN guard: a non-finite loss or gradient norm stops the run (or skips the update), never
goes on silently into a NaN model.

``train.nan_policy: stop`` (the default) stops at the first such step with one line: the step,
what became non-finite, the learning rate then, and the last good checkpoint. ``skip_step``
leaves that update out and counts it (``skipped_steps`` in summary.json), stopping after
``train.nan_max_skips`` in a row, since by then the run will not recover by itself.
"""

from __future__ import annotations

import math
from pathlib import Path

from tunelab.errors import UserError
from tunelab.training.checkpoint import list_checkpoints


class NonFiniteGuard:
    def __init__(self, policy: str, max_consecutive: int) -> None:
        self.policy = policy
        self.max_consecutive = max_consecutive
        self.skipped = 0
        self._in_a_row = 0

    def check(self, step: int, loss: float, grad_norm: float, lr: float, checkpoints: Path) -> bool:
        """True where this step's update must be skipped; raises ``UserError`` where the run must stop.
        ``checkpoints`` is the run's checkpoint folder, read only to name the last good one."""
        bad = []
        if not math.isfinite(loss):
            bad.append(f"the loss ({loss})")
        if not math.isfinite(grad_norm):
            bad.append(f"the gradient norm ({grad_norm})")
        if not bad:
            self._in_a_row = 0
            return False
        what = " and ".join(bad)
        saved = list_checkpoints(checkpoints)
        last_good = f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint was written"
        advice = "lower train.lr, or set train.nan_policy=skip_step to skip such steps"
        if self.policy == "skip_step":
            self.skipped += 1
            self._in_a_row += 1
            if self._in_a_row < self.max_consecutive:
                return True
            raise UserError(
                f"step {step}: {what} non-finite for {self._in_a_row} steps in a row at lr {lr:.3g}; "
                f"stopped ({last_good}); lower train.lr"
            )
        raise UserError(f"step {step}: {what} became non-finite at lr {lr:.3g}; stopped ({last_good}); {advice}")
