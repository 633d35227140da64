"""Atomic writes: a reader sees the old file or the new one, never half of one, and no temp files."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tunelab.runs import atomic
from tunelab.runs.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic, write_yaml_atomic
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
