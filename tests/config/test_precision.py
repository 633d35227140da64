"""tunelab.config.precision: ``train.precision: auto`` is bf16 on a GPU that computes in bf16 and fp32
elsewhere; an explicit precision is kept as given."""

from __future__ import annotations

import pytest
import torch

from tunelab.config.loading import as_recorded
from tunelab.config.precision import resolve_precision, with_resolved_precision
from tunelab.methods.config_loading import load_config


def pretend_gpu(monkeypatch, available: bool, native_bf16: bool) -> list[dict]:
    """torch.cuda as a machine with (or without) a GPU; the calls to is_bf16_supported, recorded."""
    calls: list[dict] = []

    def is_bf16_supported(**kwargs) -> bool:
        calls.append(kwargs)
        return native_bf16 if kwargs.get("including_emulation", True) is False else True  # emulation: always

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return calls


def test_the_default_is_auto_and_means_fp32_on_a_cpu(monkeypatch):
    pretend_gpu(monkeypatch, available=False, native_bf16=False)
    config = load_config(None, ["model=some/model", "data.train=train.jsonl"])

    assert config.train.precision == "auto"
    assert with_resolved_precision(config).train.precision == "fp32"


def test_auto_means_bf16_on_a_gpu_with_native_bf16(monkeypatch):
    calls = pretend_gpu(monkeypatch, available=True, native_bf16=True)

    assert resolve_precision("auto") == "bf16"
    assert calls == [{"including_emulation": False}]


def test_auto_means_fp32_on_a_gpu_that_only_emulates_bf16(monkeypatch):
    pretend_gpu(monkeypatch, available=True, native_bf16=False)  # a T4 or V100: bf16 is emulated, slower

    assert resolve_precision("auto") == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept_on_any_machine(monkeypatch, precision):
    for available in (False, True):
        pretend_gpu(monkeypatch, available=available, native_bf16=True)
        config = load_config(None, ["model=some/model", "data.train=train.jsonl", f"train.precision={precision}"])
        assert resolve_precision(precision) == precision
        assert with_resolved_precision(config) is config


def test_auto_continues_the_precision_of_the_run_already_in_the_folder(monkeypatch, tmp_path):
    """A run recorded in fp32 (on a CPU, or before auto was the default) resumes and reruns in fp32
    on a GPU machine too; a fresh run (the folder replaced) takes what auto means there."""
    pretend_gpu(monkeypatch, available=True, native_bf16=True)
    folder = tmp_path / "run"
    config = load_config(None, ["model=some/model", "data.train=train.jsonl", f"output_dir={folder}"])
    assert as_recorded(config).train.precision == "bf16"  # nothing recorded yet

    folder.mkdir()
    (folder / "config.yaml").write_text("train:\n  precision: fp32\n", encoding="utf-8")
    assert as_recorded(config).train.precision == "fp32"
    assert as_recorded(config, fresh=True).train.precision == "bf16"
    explicit = load_config(
        None, ["model=some/model", "data.train=t.jsonl", f"output_dir={folder}", "train.precision=bf16"]
    )
    assert as_recorded(explicit).train.precision == "bf16"  # only auto defers to the record

    (folder / "config.yaml").write_text("train: [not, a, mapping", encoding="utf-8")
    assert as_recorded(config).train.precision == "bf16"  # an unreadable record counts as none


def test_a_recorded_precision_this_machine_cannot_train_in_is_not_continued(monkeypatch, tmp_path):
    """fp16 recorded on a GPU, rerun on a CPU: auto means fp32 (the run is replaced, not resumed)."""
    pretend_gpu(monkeypatch, available=False, native_bf16=False)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text("train:\n  precision: fp16\n", encoding="utf-8")
    config = load_config(None, ["model=some/model", "data.train=train.jsonl", f"output_dir={folder}"])

    assert as_recorded(config).train.precision == "fp32"
    (folder / "config.yaml").write_text("train:\n  precision: bf16\n", encoding="utf-8")
    assert as_recorded(config).train.precision == "bf16"  # a CPU trains in bf16: the run continues so
