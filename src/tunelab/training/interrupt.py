"""Ctrl-C that stops training cleanly: the first stops at the next step boundary, the second at once.

A KeyboardInterrupt raised in the middle of a backward pass or an optimizer step leaves nothing
worth keeping, and torch's threads can keep the process busy well after it. So the first SIGINT
only raises a flag that the loop reads between steps (it then writes a checkpoint, where
checkpoints are on, and raises ``TrainingInterrupted``); a second SIGINT restores Python's own
handler's behaviour and interrupts at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType

EXIT_INTERRUPTED = 130


class TrainingInterrupted(KeyboardInterrupt):  # noqa: N818  (a KeyboardInterrupt: callers treat it as one)
    """The run stopped at a step boundary on Ctrl-C; the message says how to resume it."""


class StopOnInterrupt:
    """``stop.install()`` before the loop, ``if stop.requested:`` between steps, ``stop.restore()``
    after it (or ``with StopOnInterrupt() as stop:``). Outside the loop (loading, evaluation) Ctrl-C
    interrupts as usual, since no step boundary would come to honour the request."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: object = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("tunelab: stopping at the end of this step (Ctrl-C again to stop at once)", file=sys.stderr)

    def install(self) -> None:
        if self._previous is None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
            self._previous = None

    def __enter__(self) -> StopOnInterrupt:
        self.install()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.restore()
