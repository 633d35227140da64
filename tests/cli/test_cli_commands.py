"""``tunelab train`` end to end on a tiny model, ``train --help`` and ``methods``.

One real run per module (a few seconds); the tests that try to train into its folder again check
that nothing it wrote changed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_records, write_jsonl
from tunelab.cli.main import EXIT_USAGE, main
from tunelab.config.loading import as_recorded
from tunelab.methods.config_loading import load_config


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished_run(tiny_llama, tmp_path_factory) -> tuple[Path, list[str]]:
    """A run folder trained by ``tunelab train`` and the overrides that made it."""
    folder = tmp_path_factory.mktemp("cli-run")
    data = write_jsonl(folder / "train.jsonl", make_records(24))
    overrides = [
        f"model={tiny_llama}",
        f"data.train={data}",
        f"output_dir={folder / 'run'}",
        "method.r=4",
        "train.max_steps=2",
        "train.batch_size=4",
    ]
    assert main(["train", "--quiet", *overrides]) == 0
    return folder / "run", overrides


def test_train_writes_a_finished_run(finished_run):
    run, overrides = finished_run

    assert {"config.yaml", "metrics.jsonl", "summary.json", "adapter_model.safetensors"} <= set(snapshot(run))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["method"] == "lora" and summary["steps"] == 2
    # config.yaml records the config as train ran it: paths absolute, precision auto as what it meant
    assert load_config(run / "config.yaml") == as_recorded(load_config(None, overrides))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["method.r=8"], "already holds a run"),
        (["method.r=8", "train.resume=true"], "holds a different run"),
        (["method=full", "train.resume=true"], "holds a different run"),
        (["model=someone/other-model", "train.resume=true"], "holds a different run"),
    ],
    ids=["different_config", "resume_different_rank", "resume_different_method", "resume_different_model"],
)
def test_a_refused_second_run_leaves_the_first_untouched(finished_run, capsys, extra, expected):
    run, overrides = finished_run
    before = snapshot(run)

    assert main(["train", "--quiet", *overrides, *extra]) == EXIT_USAGE

    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(run) == before


def test_a_folder_holding_other_files_is_refused(tiny_llama, prompt_completion_file, tmp_path, capsys):
    folder = tmp_path / "my-notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious", encoding="utf-8")

    code = main(
        ["train", "--quiet", f"model={tiny_llama}", f"data.train={prompt_completion_file}", f"output_dir={folder}"]
    )

    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no tunelab run" in err and "--overwrite" in err
    assert snapshot(folder) == {"notes.txt": b"precious"}


def test_train_help_lists_keys_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])

    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()

    def help_line(key: str) -> str:
        found = [line for line in lines if line.split()[:1] == [key]]
        assert found, f"{key} not listed in --help"  # method options repeat under each method
        return found[0]

    assert "default 512" in help_line("data.max_length")
    assert "default null" in help_line("train.lr") and "the method's own" in help_line("train.lr")
    assert "default 8" in help_line("method.r")
    assert "default false" in help_line("train.resume")
    assert "default lora" in help_line("method.name")
    assert "default 2" in help_line("method.layers")


def test_methods_lists_every_method(capsys):
    assert main(["methods"]) == 0

    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert listed == [
        "full",
        "last_layers",
        "lora",
        "dora",
        "qlora",
        "adalora",
        "ia3",
        "peft",
        "prefix",
        "prompt",
        "ptuning",
        "multitask_prompt",
        "llama_adapter",
        "adapter",
        "features",
        "zeroshot",
        "fewshot",
        "rag",
    ]
