"""Nothing already written is lost, and a run folder works from anywhere."""

from __future__ import annotations

import json
import os

import pytest

from conftest import make_records, training_config, write_jsonl
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.inference.generate import generate_text
from tunelab.training.recipe import train


def _snapshot(folder):
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_overwrite_keeps_the_old_run_when_the_new_one_is_invalid(tiny_llama, prompt_completion_file, tmp_path):
    run = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run"), progress=False).run_dir
    before = _snapshot(run)
    bad = training_config(tiny_llama, prompt_completion_file, run, **{"method.target_modules": "[nope]"})
    with pytest.raises(UserError, match="nope"):
        train(bad, overwrite=True, progress=False)
    assert _snapshot(run) == before


def test_output_dir_may_not_hold_the_model_or_data(tiny_llama, prompt_completion_file, tmp_path):
    run = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run"), progress=False).run_dir
    before = _snapshot(run)
    with pytest.raises(UserError, match="would hold model"):
        train(training_config(run, prompt_completion_file, run), overwrite=True, progress=False)
    with pytest.raises(UserError, match="would hold data.train"):
        train(training_config(tiny_llama, prompt_completion_file, tmp_path), overwrite=True, progress=False)
    assert _snapshot(run) == before


def test_resume_without_a_checkpoint_is_refused(tiny_llama, prompt_completion_file, tmp_path):
    run = train(training_config(tiny_llama, prompt_completion_file, tmp_path / "run"), progress=False).run_dir
    before = _snapshot(run)
    with pytest.raises(UserError, match="no checkpoint to resume from"):
        train(training_config(tiny_llama, prompt_completion_file, run, **{"train.resume": True}), progress=False)
    assert _snapshot(run) == before


def test_relative_paths_are_recorded_absolute(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_llama.parent)
    write_jsonl(tiny_llama.parent / "rel.jsonl", make_records(16))
    config = training_config(tiny_llama.name, "rel.jsonl", "rel-run")
    run = train(config, progress=False).run_dir
    saved = (run / "config.yaml").read_text()
    assert str(tiny_llama) in saved
    adapter = json.loads((run / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tiny_llama)
    monkeypatch.chdir(tmp_path)  # elsewhere, the run still finds its base
    assert isinstance(generate_text(str(run), prompt="hi", max_new_tokens=3), str)


def test_sequences_longer_than_the_context_are_a_clear_error(tiny_gpt2, tmp_path):
    long_text = " ".join(["robot star fox dog"] * 200)
    data = write_jsonl(tmp_path / "long.jsonl", [{"text": long_text}] * 4)
    config = training_config(tiny_gpt2, data, tmp_path / "run", **{"data.max_length": 2048})
    with pytest.raises(UserError, match="exceed the model's context of 512"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_non_utf8_line_is_named_through_the_cli(tiny_llama, tmp_path, capsys):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    code = main(["train", f"model={tiny_llama}", f"data.train={data}", f"output_dir={tmp_path / 'out'}", "--quiet"])
    assert code == 2
    assert "latin1.jsonl line 2: not UTF-8" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")
