"""Atomic file writes: a temporary file in the same folder, then ``os.replace``.

A crash or a SIGKILL mid-write leaves either the old file or the new one, never half of one. Every
module that writes a single file it must not lose goes through here: ``write_bytes_atomic``,
``write_text_atomic``, ``write_json_atomic`` and ``write_yaml_atomic`` for content in memory, and
``with atomic_path(target) as temporary:`` for a library that writes to a path itself
(safetensors' ``save_file``, ``torch.save``, Parquet).

Not here: installing a whole folder (a checkpoint, a run's artifact, a merged model, a converted
GGUF model, a retrieval index, a trained tokenizer). Those are written into a staging folder beside
the target and renamed into place by the module that owns the folder, because what may already be
there differs (an older checkpoint of the same step, a folder to retire first, the same cache entry
published by another process). This module imports nothing of tunelab, so every layer may use it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """``with atomic_path(target) as temporary:`` write ``temporary``, a new file beside ``target``.

    On a clean exit the file is flushed to disk and renamed to ``target``; on an error (or an
    interruption) it is removed and ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions of a new file
        yield temporary
        _flush_to_disk(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _flush_to_disk(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path | str, payload: Any) -> None:
    """``payload`` as indented JSON with a final newline."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_yaml_atomic(path: Path | str, payload: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(payload, sort_keys=False))
