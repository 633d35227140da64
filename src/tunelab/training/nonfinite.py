"""The NaN guard: a non-finite loss or gradient norm stops the run (or skips the update), never
goes on silently into a NaN model.

``train.nan_policy: stop`` (the default) stops at the first such step with one line: the step,
what became non-finite, the learning rate then, and the last good checkpoint. ``skip_step``
leaves that update out and counts it (``skipped_steps`` in summary.json), stopping after
``train.nan_max_skips`` in a row, since by then the run will not recover by itself.

Under fp16 a loss scaler multiplies the loss before the backward pass, and an infinite gradient
norm with a finite loss is its overflow, which it handles itself: it skips that update and halves
its scale (accelerate's ``optimizer_step_was_skipped``). Such a step is neither stopped nor counted
as non-finite here (``overflow_skipped_steps`` in summary.json), unless the scaler skips
``SCALER_MAX_OVERFLOWS`` updates in a row: by then its scale is 2**-30 of where it started and the
gradients are non-finite at any scale.
"""

from __future__ import annotations

import math
from pathlib import Path

from tunelab.errors import UserError
from tunelab.training.checkpoint import list_checkpoints

SCALER_MAX_OVERFLOWS = 30


def _last_good(checkpoints: Path) -> str:
    saved = list_checkpoints(checkpoints)
    return f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint was written"


class NonFiniteGuard:
    def __init__(self, policy: str, max_consecutive: int, loss_scaled: bool = False) -> None:
        self.policy = policy
        self.max_consecutive = max_consecutive
        self.loss_scaled = loss_scaled  # fp16: a loss scaler handles its own overflows
        self.skipped = 0
        self.overflow_skipped = 0
        self._in_a_row = 0
        self._overflows_in_a_row = 0

    def check(self, step: int, loss: float, grad_norm: float, lr: float, checkpoints: Path) -> bool:
        """True where this step's update must be skipped; raises ``UserError`` where the run must stop.
        ``checkpoints`` is the run's checkpoint folder, read only to name the last good one."""
        if self.loss_scaled and math.isfinite(loss) and not math.isfinite(grad_norm):
            return False  # the loss scaler's overflow: its optimizer step skips the update itself
        bad = []
        if not math.isfinite(loss):
            bad.append(f"the loss ({loss})")
        if not math.isfinite(grad_norm):
            bad.append(f"the gradient norm ({grad_norm})")
        if not bad:
            self._in_a_row = 0
            return False
        what = " and ".join(bad)
        last_good = _last_good(checkpoints)
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

    def after_optimizer_step(self, step: int, scaler_skipped: bool, lr: float, checkpoints: Path) -> None:
        """Count the loss scaler's skipped updates; raises ``UserError`` after too many in a row."""
        if not scaler_skipped:
            self._overflows_in_a_row = 0
            return
        self.overflow_skipped += 1
        self._overflows_in_a_row += 1
        if self._overflows_in_a_row >= SCALER_MAX_OVERFLOWS:
            raise UserError(
                f"step {step}: the fp16 gradients overflowed for {self._overflows_in_a_row} steps in a row "
                f"at lr {lr:.3g}, whatever the loss scale; stopped ({_last_good(checkpoints)}); "
                "lower train.lr, or use train.precision=bf16 or fp32"
            )
