"""tunelab.atomic: a reader sees the old file or the new one, never half of one, and no temp files."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tunelab import atomic
from tunelab.atomic import (
    atomic_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
    write_yaml_atomic,
)
from tunelab.runs.run_directory import RunDirectory


def test_writes_replace_the_file_and_leave_nothing_else(tmp_path):
    target = tmp_path / "nested" / "summary.json"

    write_json_atomic(target, {"loss": 1.0})
    write_json_atomic(target, {"loss": 0.5, "steps": [1, 2]})
    write_yaml_atomic(tmp_path / "config.yaml", {"method": {"name": "lora", "r": 8}})
    write_text_atomic(tmp_path / "notes.txt", "héllo\n")
    write_bytes_atomic(tmp_path / "blob.bin", b"\x00\x01")

    assert json.loads(target.read_text(encoding="utf-8")) == {"loss": 0.5, "steps": [1, 2]}
    assert yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8")) == {
        "method": {"name": "lora", "r": 8}
    }
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(path.name for path in tmp_path.rglob("*")) == [
        "blob.bin",
        "config.yaml",
        "nested",
        "notes.txt",
        "summary.json",
    ]


def fail(*args, **kwargs):
    raise OSError("disk went away")


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_a_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path, monkeypatch, failing):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"loss": 1.0})
    old = target.read_bytes()

    monkeypatch.setattr(atomic.os, failing, fail)
    with pytest.raises(OSError, match="disk went away"):
        write_json_atomic(target, {"loss": 0.5})

    assert target.read_bytes() == old
    assert os.listdir(tmp_path) == ["summary.json"]


def test_a_value_that_cannot_be_written_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"loss": 1.0})

    with pytest.raises(TypeError):
        write_json_atomic(target, {"loss": object()})

    assert json.loads(target.read_text(encoding="utf-8")) == {"loss": 1.0}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_a_library_writes_to_the_temporary_path_and_the_target_appears_only_at_the_end(tmp_path):
    target = tmp_path / "nested" / "vectors.safetensors"
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(".vectors.safetensors.")
        save_file({"embeddings": torch.ones(2, 3)}, temporary)
        assert not target.exists()

    assert torch.equal(load_file(target)["embeddings"], torch.ones(2, 3))
    assert os.listdir(target.parent) == ["vectors.safetensors"]


def test_a_written_file_has_the_usual_permissions_of_a_new_file(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(tmp_path / "rng.pt") as temporary:
        temporary.write_bytes(b"state")
    write_text_atomic(tmp_path / "summary.json", "{}")

    for name in ("rng.pt", "summary.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_an_error_inside_atomic_path_keeps_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "optimizer.pt"
    target.write_bytes(b"old")

    with pytest.raises(KeyboardInterrupt), atomic_path(target) as temporary:
        temporary.write_bytes(b"half of the new")
        raise KeyboardInterrupt

    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["optimizer.pt"]


def test_keep_metrics_until_interrupted_keeps_every_record(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path)
    for step in (1, 2, 3):
        run.append_metrics({"step": step, "loss": 0.1})
    old = run.metrics_file.read_bytes()

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError):
        run.keep_metrics_until(1)

    assert run.metrics_file.read_bytes() == old
    assert os.listdir(tmp_path) == ["metrics.jsonl"]
