"""Input a user can get wrong, and files that get damaged: one ``error:`` line naming the file, the
row or line and what is wrong, exit code 2, nothing lost. Anything unexpected: one line and a
traceback file, exit 1."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import write_comparison, write_jsonl
from tunelab.cli.main import main


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def train_args(model: Path, data: Path, run: Path, *extra: str) -> list[str]:
    return ["train", f"model={model}", f"data.train={data}", f"output_dir={run}", "--quiet", *extra]


@pytest.fixture(scope="module")
def classifier_run(tiny_llama, labelled_data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("classifier") / "run"
    train_file, _ = labelled_data
    assert main(train_args(tiny_llama, train_file, run, "task=classification", "train.max_steps=1")) == 0
    return run


def test_a_ragged_csv_row_is_named(tiny_llama, tmp_path, capsys):
    data = tmp_path / "train.csv"
    data.write_text("prompt,completion\na,b\nc,d,e,f\ng,h\n")
    code, err = run_cli(capsys, *train_args(tiny_llama, data, tmp_path / "run"))
    assert code == 2
    assert err == [f"error: {data} row 2 (line 3): 4 fields where the header has 2 (prompt, completion)"]


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}], "messages[0] is the assistant's"),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "y"}], "has no user message"),
    ],
)
def test_a_chat_row_that_does_not_start_with_the_user_is_named(tiny_llama, tmp_path, capsys, messages, problem):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    data = write_jsonl(tmp_path / "chat.jsonl", [good, good, {"messages": messages}])
    code, err = run_cli(capsys, *train_args(tiny_llama, data, tmp_path / "run"))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {data} line 3: ") and problem in err[0]


def test_a_wrong_typed_field_is_named_on_its_own_line(tiny_llama, tmp_path, capsys):
    rows = [{"prompt": "a", "completion": "b"}] * 2 + [{"prompt": ["a list"], "completion": "b"}]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    code, err = run_cli(capsys, *train_args(tiny_llama, data, tmp_path / "run"))
    assert (code, err) == (2, [f"error: {data} line 3: field 'prompt' must be a string, got list"])


def test_a_classification_run_is_refused_by_generate_and_as_a_language_model_base(
    classifier_run, prompt_completion_file, tmp_path, capsys
):
    code, err = run_cli(capsys, "generate", str(classifier_run), "--prompt", "hello")
    assert code == 2 and len(err) == 1 and f"use tunelab predict {classifier_run}" in err[0]
    code, err = run_cli(capsys, *train_args(classifier_run, prompt_completion_file, tmp_path / "next"))
    assert code == 2 and len(err) == 1
    assert "is a classification run" in err[0] and "cannot be the base of a causal_lm run" in err[0]
    assert not (tmp_path / "next").exists()


def test_a_truncated_weights_file_is_named(tiny_llama, prompt_completion_file, tmp_path, capsys):
    damaged = tmp_path / "model"
    shutil.copytree(tiny_llama, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code, err = run_cli(capsys, *train_args(damaged, prompt_completion_file, tmp_path / "run"))
    assert code == 2 and len(err) == 1
    assert f"{weights} is damaged (truncated or corrupt" in err[0]


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(
    tiny_llama, prompt_completion_file, tmp_path, capsys, caplog
):
    caplog.set_level("INFO", logger="tunelab")
    run = tmp_path / "run"
    first = train_args(tiny_llama, prompt_completion_file, run, "train.max_steps=4", "train.save_every=2")
    assert main(first + ["train.keep_checkpoints=2"]) == 0
    (run / "summary.json").unlink()  # as if killed after the last checkpoint
    newest = sorted((run / "checkpoints").glob("step-*"))[-1]
    optimizer = newest / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    code, err = run_cli(capsys, *first, "train.keep_checkpoints=2", "train.resume=true")
    assert code == 0, err
    assert f"checkpoint {newest} is damaged" in caplog.text
    assert "resumed from step-00000002" in caplog.text
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


def test_an_unknown_method_in_a_comparison_names_the_file_and_the_entry(
    tiny_llama, prompt_completion_file, tmp_path, capsys
):
    entries = [{"name": "mine", "method": "loraa"}]
    spec = write_comparison(tmp_path / "compare.yaml", tmp_path / "out", tiny_llama, prompt_completion_file, entries)
    code, err = run_cli(capsys, "compare", str(spec))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {spec}: entry 'mine': config error: method: unknown method 'loraa'")


def test_an_unreadable_data_file_is_one_line(tiny_llama, prompt_completion_file, tmp_path, capsys, monkeypatch):
    import tunelab.data.loading as loading

    def denied(path: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(loading, "_has_content", denied)
    code, err = run_cli(capsys, *train_args(tiny_llama, prompt_completion_file, tmp_path / "run"))
    assert (code, err) == (2, [f"error: {prompt_completion_file}: cannot read the file (permission denied)"])


def test_an_unwritable_output_dir_is_one_line(tiny_llama, prompt_completion_file, tmp_path, capsys, monkeypatch):
    from tunelab.runs.run_directory import RunDirectory

    def denied(self, plain_config, overwrite):
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(RunDirectory, "start", denied)
    code, err = run_cli(capsys, *train_args(tiny_llama, prompt_completion_file, tmp_path / "run"))
    assert code == 2 and err[-1] == f"error: {tmp_path / 'run'}: permission denied (Permission denied)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes through file permissions")
def test_real_file_permissions(tiny_llama, prompt_completion_file, tmp_path, capsys):
    prompt_completion_file.chmod(0)
    code, err = run_cli(capsys, *train_args(tiny_llama, prompt_completion_file, tmp_path / "run"))
    assert code == 2 and len(err) == 1 and "permission denied" in err[0]


def test_an_unexpected_error_is_one_line_with_a_traceback_file(capsys, monkeypatch):
    import tunelab.cli.main as cli

    def broken(args):
        raise RuntimeError("something we did not foresee")

    monkeypatch.setattr(cli, "run_command", broken)
    code, err = run_cli(capsys, "methods")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: unexpected RuntimeError: something we did not foresee (full traceback in ")
    report = Path(err[0].split("full traceback in ")[1].split(";")[0])
    assert "Traceback" in report.read_text() and "something we did not foresee" in report.read_text()
    report.unlink()
    with pytest.raises(RuntimeError, match="did not foresee"):
        main(["--debug", "methods"])
