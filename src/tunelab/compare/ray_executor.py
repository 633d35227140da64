"""``tunelab compare --executor ray``: every entry (every seed's run) is one Ray task.

Each task asks Ray for the entry's ``resources`` (``{cpus: 2, gpus: 1}``; unnamed: one CPU, and one
GPU where the cluster has GPUs, since Ray hides GPUs only from tasks that ask for some), runs the
same per-entry function as the sequential executor, and returns the entry's record. Learning-rate
tuning runs inside its entry's task, its trials one after another. Ray schedules, places and
isolates the tasks (``ray.remote``, ``.options``, ``ray.wait``); this module owns what Ray does not
know about a comparison:

- the comparison folder must be one shared folder: the driver writes a token into it, and a task
  whose host does not see that token, or cannot write there, fails its entry with one line naming
  the folder and the host;
- a task is never retried (``max_retries=0``): a worker that dies (killed, out of memory, crashed)
  fails its entry with the reason, and the other entries go on; each task has a fresh worker
  process (``max_calls=1``), so nothing one entry leaves in memory reaches the next;
- Ctrl-C cancels the tasks still running; an entry with a checkpoint resumes from it next time;
- a task that asks for more than the whole Ray has fails at once rather than waiting forever, unless
  the Ray is a cluster joined by address (``--ray-address``, ``RAY_ADDRESS``), which may be
  autoscaled: there Ray waits for the resources;
- relative paths of the comparison file mean the same on a worker: the task works in the
  directory ``tunelab compare`` ran in, where that directory exists on its host.

Ray is started in this process (``ray.init()``, every CPU and GPU of this machine) unless
``--ray-address`` or ``RAY_ADDRESS`` names a cluster to join, or Ray is already initialised (a
Python caller's own ``ray.init``); only a Ray started here is shut down here.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunelab.atomic import write_text_atomic
from tunelab.compare.executors import EntryOutcome, EntryWork
from tunelab.compare.spec import Entry
from tunelab.errors import UserError, first_line
from tunelab.training.interrupt import TrainingInterrupted

log = logging.getLogger("tunelab")

SHARED_FOLDER_TOKEN = ".ray-shared-folder"  # in the comparison folder while its tasks run


def check_shared_folder(folder: Path, token: str) -> None:
    """On a worker: the comparison folder is the driver's (its token is there) and writable."""
    host = socket.gethostname()
    try:
        seen = (folder / SHARED_FOLDER_TOKEN).read_text(encoding="utf-8")
    except OSError:
        seen = None
    if seen != token:
        raise UserError(
            f"comparison folder {folder} is not shared with Ray worker host {host}: "
            "put it on a filesystem every Ray node mounts at the same path"
        )
    probe = folder / f".write-check-{host}-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"comparison folder {folder}: Ray worker host {host} cannot write there ({reason})") from None


def _log_to_stderr() -> None:
    """A worker's tunelab lines reach the driver's terminal through Ray's log forwarding."""
    logger = logging.getLogger("tunelab")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tunelab: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run_entry_task(work: EntryWork, entry: Entry, folder: str, token: str, driver_cwd: str) -> dict[str, Any]:
    """The body of one Ray task: check the shared folder, then train the entry as the sequential
    executor would; the record it returns goes back to the driver."""
    _log_to_stderr()
    check_shared_folder(Path(folder), token)
    if os.path.isdir(driver_cwd):
        os.chdir(driver_cwd)
    return work(entry)


def lost_reason(error: BaseException) -> str:
    """One line for an entry whose task gave no record."""
    import ray.exceptions

    if isinstance(error, ray.exceptions.RayTaskError):
        cause = getattr(error, "cause", None)  # the task's own exception, when it could be sent back
        return first_line(cause) if isinstance(cause, BaseException) else first_line(error)
    if isinstance(error, ray.exceptions.WorkerCrashedError):
        return f"its Ray worker died (killed, out of memory or crashed): {first_line(error)}"
    return f"Ray: {type(error).__name__}: {first_line(error)}"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'tunelab[ray]'") from None
    return ray


class RayExecutor:
    """Entries as Ray tasks, each with its own resources; outcomes in the order they finish."""

    in_process = False

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def run(self, entries: list[Entry], work: EntryWork, folder: Path) -> Iterator[EntryOutcome]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        local = not (self.address or os.environ.get("RAY_ADDRESS"))
        if started_here:
            where = "on this machine" if local else f"joining {self.address or os.environ.get('RAY_ADDRESS')}"
            log.info(f"Ray: {where}")
            ray.init(address=self.address, logging_level=logging.WARNING)
        token = uuid.uuid4().hex
        write_text_atomic(folder / SHARED_FOLDER_TOKEN, token)
        try:
            yield from self._run_tasks(ray, entries, work, folder, token, check_feasible=local)
        finally:
            (folder / SHARED_FOLDER_TOKEN).unlink(missing_ok=True)
            if started_here:
                ray.shutdown()

    def _run_tasks(
        self, ray: Any, entries: list[Entry], work: EntryWork, folder: Path, token: str, check_feasible: bool
    ) -> Iterator[EntryOutcome]:
        # No retries: a retried entry would train twice, and a worker killed for memory would be again.
        # One entry per worker process (Ray's own default for GPU tasks): what an entry leaves behind
        # (CUDA context and cache, a library's global state) is gone before the next one starts.
        task = ray.remote(max_retries=0, retry_exceptions=False, max_calls=1)(run_entry_task)
        cluster = ray.cluster_resources()
        default_gpus = 1.0 if cluster.get("GPU", 0) >= 1 else 0.0
        pending: dict[Any, Entry] = {}
        for entry in entries:
            cpus = entry.resources.cpus if entry.resources.cpus is not None else 1.0
            gpus = entry.resources.gpus if entry.resources.gpus is not None else default_gpus
            short = _shortfall(cpus, gpus, cluster)
            if check_feasible and short:
                yield EntryOutcome(entry, None, f"asks Ray for {short}; this machine's Ray has {_describe(cluster)}")
                continue
            options = {"num_cpus": cpus, "num_gpus": gpus, "name": f"tunelab-compare:{entry.name}"}
            ref = task.options(**options).remote(work, entry, str(folder), token, os.getcwd())
            pending[ref] = entry
        total = len(pending)
        log.info(f"{total} entries submitted to Ray ({_describe(cluster)})")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    entry = pending.pop(ref)
                    yield self._outcome(ray, ref, entry, f"{total - len(pending)} of {total}")
        except KeyboardInterrupt:
            raise TrainingInterrupted("Ctrl-C: their Ray tasks are cancelled; one with a checkpoint resumes") from None
        finally:
            for ref in pending:  # left unfinished (Ctrl-C, an error here): on a cluster they would outlive this driver
                ray.cancel(ref, force=True)

    @staticmethod
    def _outcome(ray: Any, ref: Any, entry: Entry, count: str) -> EntryOutcome:
        try:
            record = ray.get(ref)
        except ray.exceptions.RayError as error:
            reason = lost_reason(error)
            log.error(f"entry {entry.name}: failed ({count} done): {reason}")
            return EntryOutcome(entry, None, reason)
        log.info(f"entry {entry.name}: {record.get('status')} ({count} done)")
        return EntryOutcome(entry, record)


def _shortfall(cpus: float, gpus: float, cluster: dict[str, float]) -> str:
    """What a task asks for beyond the whole cluster ('' where it fits)."""
    asks = {"CPU": cpus, "GPU": gpus}
    return ", ".join(f"{amount:g} {name}" for name, amount in asks.items() if amount > cluster.get(name, 0))


def _describe(cluster: dict[str, float]) -> str:
    return f"{cluster.get('CPU', 0):g} CPU, {cluster.get('GPU', 0):g} GPU"
