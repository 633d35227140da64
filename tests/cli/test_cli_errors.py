"""Bad input on the command line: exit code 2, one ``error:`` line on stderr, no traceback.

Every case also checks that a refused command wrote nothing: output_dir is not created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# datasets gives its logger a stderr handler when first imported; importing it here, at collection,
# binds that handler to pytest's session stream rather than to one test's (later closed) capsys stream.
import datasets  # noqa: F401
import pytest

from tunelab.cli.main import EXIT_USAGE, main


def error_line(capsys) -> str:
    """The single ``error:`` line the CLI printed (and nothing else on stderr)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture()
def train_argv(tiny_llama, prompt_completion_file, tmp_path, monkeypatch):
    """A ``tunelab train`` command line that would run; each test adds the override that breaks it."""
    monkeypatch.chdir(tmp_path)  # so ./nope and relative paths are under tmp_path
    return [
        "train",
        "--quiet",
        f"model={tiny_llama}",
        f"data.train={prompt_completion_file}",
        f"output_dir={tmp_path / 'out'}",
        "train.max_steps=2",
        "train.batch_size=4",
    ]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.batchsize=4", ["config error: train.batchsize: unknown key"]),
        ("train.batch_size=abc", ["config error: train.batch_size: ", "'abc'"]),
        ("data.train=missing.jsonl", ["config error: data.train: file not found: missing.jsonl"]),
        ("model=./nope", ["model: folder not found: ./nope"]),
        ("method.name=nope", ["unknown method 'nope'", "full, ia3, last_layers", "lora"]),
    ],
    ids=["unknown_key", "wrong_type", "missing_data_file", "nonexistent_model", "unknown_method"],
)
def test_bad_config_exits_2_with_one_error_line(train_argv, tmp_path, capsys, override, expected):
    assert main([*train_argv, override]) == EXIT_USAGE

    line = error_line(capsys)
    for part in expected:
        assert part in line
    assert not (tmp_path / "out").exists()


def test_malformed_jsonl_line_names_file_and_line(train_argv, tmp_path, capsys):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": "a", \n', encoding="utf-8")

    assert main([*train_argv, f"data.train={data}"]) == EXIT_USAGE

    line = error_line(capsys)
    assert "broken.jsonl" in line and "line 2" in line
    assert not (tmp_path / "out").exists()


def test_empty_training_file(train_argv, tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("", encoding="utf-8")

    assert main([*train_argv, f"data.train={data}"]) == EXIT_USAGE

    line = error_line(capsys)
    assert "empty.jsonl" in line and "empty" in line.removeprefix(f"error: {data}")
    assert not (tmp_path / "out").exists()


def test_blank_lines_only_training_file_is_called_empty(train_argv, tmp_path, capsys):
    data = tmp_path / "blank.jsonl"
    data.write_text("\n\n", encoding="utf-8")

    assert main([*train_argv, f"data.train={data}"]) == EXIT_USAGE

    assert "empty" in error_line(capsys)


def test_missing_command_is_a_usage_error(capsys):
    assert main([]) == EXIT_USAGE
    assert "command" in error_line(capsys)


def test_overrides_after_an_option_are_still_overrides(capsys):
    assert main(["train", "train.max_steps=2", "--quiet", "train.batchsize=4"]) == EXIT_USAGE
    assert error_line(capsys) == "error: config error: train.batchsize: unknown key"


def run_module(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tunelab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_python_m_tunelab_prints_no_traceback(tmp_path):
    result = run_module(["train", "model=./nope", "train.batchsize=4"], tmp_path)

    assert result.returncode == EXIT_USAGE
    assert result.stderr == "error: config error: train.batchsize: unknown key\n"
    assert result.stdout == ""


def test_python_m_tunelab_malformed_jsonl_prints_only_the_error(tiny_llama, tmp_path):
    data = tmp_path / "broken.jsonl"
    data.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": "a", \n', encoding="utf-8")

    result = run_module(["train", "--quiet", f"model={tiny_llama}", f"data.train={data}", "output_dir=out"], tmp_path)

    assert result.returncode == EXIT_USAGE
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {data} line 2: invalid JSON")
