"""Where a comparison's entries train: one after another in this process, or as tasks on Ray.

``run_comparison`` gives an executor the entries to train and one function that trains an entry
and returns its record; the executor yields each entry's outcome as it comes. Every executor calls
the same function (``runner``'s), so an entry's run folder and record cannot differ between them;
what an executor owns is only where and when that function runs, and the reason an entry got no
record (its worker died). Skipping, resuming, records and the result files stay ``runner``'s.

The sequential executor is ours because it is a for loop. Spreading entries over machines is
Ray's job (``tunelab.compare.ray_executor``); tunelab has no scheduler of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tunelab.compare.spec import Entry
from tunelab.errors import UserError

EXECUTORS = ("sequential", "ray")

EntryWork = Callable[[Entry], dict[str, Any]]  # trains one entry; its record (a plain, picklable dict)


@dataclass(frozen=True)
class EntryOutcome:
    """One entry's end: the record its work returned, or why none came back (``lost``)."""

    entry: Entry
    record: dict[str, Any] | None
    lost: str | None = None


class EntryExecutor(Protocol):
    # In this process (one entry at a time, progress bars shown), or elsewhere (several at once).
    in_process: bool

    def run(self, entries: list[Entry], work: EntryWork, folder: Path) -> Iterator[EntryOutcome]:
        """Train every entry with ``work``; yield the outcomes as they come. ``folder`` is the
        comparison folder, which every entry writes into."""
        ...


class SequentialExecutor:
    """Every entry in this process, in the file's order: the default, and what needs no cluster."""

    in_process = True

    def run(self, entries: list[Entry], work: EntryWork, folder: Path) -> Iterator[EntryOutcome]:
        for entry in entries:
            yield EntryOutcome(entry, work(entry))


def make_executor(name: str, ray_address: str | None = None) -> EntryExecutor:
    """``sequential`` or ``ray`` (joining ``ray_address`` or ``RAY_ADDRESS``, else a local Ray)."""
    if name == "sequential":
        if ray_address:
            raise UserError("--ray-address is for --executor ray; the sequential executor runs here")
        return SequentialExecutor()
    if name == "ray":
        from tunelab.compare.ray_executor import RayExecutor

        return RayExecutor(ray_address)
    raise UserError(f"unknown executor '{name}' (executors: {', '.join(EXECUTORS)})")
