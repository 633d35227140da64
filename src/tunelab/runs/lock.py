"""An exclusive lock on a run, comparison or pipeline folder, held for the command's life.

Two ``tunelab train`` commands into one ``output_dir`` would interleave their metrics and leave
whichever artifact was written last. The lock is an OS-level ``flock`` on a file beside the folder
(``.<name>.lock`` in its parent, so that ``--overwrite`` may delete the folder while the lock is
held): the kernel releases it on any exit, a SIGKILL included. The file keeps the holder's process
id; a process that finds the id of one no longer holding the lock says it takes the lock over.
No maintained library we depend on does this (filelock's stale-lock handling is by age), so it is ours.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType

from tunelab.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; folders go unlocked there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("tunelab")


def lock_file_for(folder: Path) -> Path:
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


def is_main_process() -> bool:
    """Under ``accelerate launch`` / ``torchrun`` every process runs the command; one holds the lock."""
    return int(os.environ.get("RANK", "0")) == 0


class FolderLock:
    """``with FolderLock(output_dir, "run folder"):`` refuses, as a ``UserError``, a folder that
    another live tunelab process holds."""

    def __init__(self, folder: Path | str, kind: str) -> None:
        self.folder = Path(folder)
        self.kind = kind
        self.path = lock_file_for(self.folder)
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        if fcntl is None or not is_main_process():
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UserError(f"output_dir {self.folder}: cannot create it or its lock ({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{self.kind} {self.folder} is in use by another tunelab process (pid {holder}); "
                "wait for it to finish, or choose another folder"
            ) from None
        previous = os.read(fd, 64).decode(errors="replace").strip()
        if previous and previous != str(os.getpid()):
            log.warning(f"{self.kind} {self.folder}: taking over the lock of process {previous}, no longer running")
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # a clean exit leaves no holder behind
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
