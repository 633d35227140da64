"""``tunelab compare`` and ``tunelab report`` end to end on the tiny Llama; bad input is exit code 2
and one ``error:`` line, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

# datasets gives its logger a stderr handler when first imported; importing it here, at collection,
# binds that handler to pytest's session stream rather than to one test's (later closed) capsys stream.
import datasets  # noqa: F401
import pytest
import yaml

from conftest import make_records, write_jsonl
from tunelab.cli.main import EXIT_USAGE, main


def only_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


COMPARE_YAML = """\
output_dir: {folder}/out
base:
  model: {model}
  data: {{train: {folder}/train.jsonl}}
  train: {{batch_size: 4}}
budget: {{steps: 40}}
entries:
  - {{name: lora, method: {{name: lora, r: 2}}}}
  - {{name: broken, method: {{name: last_layers, layers: 99}}}}   # the tiny model has 2 blocks
"""


@pytest.fixture(scope="module")
def comparison_file(tiny_llama, tmp_path_factory) -> Path:
    """A comparison file as a user writes it (the budget is cut to 2 steps on the command line)."""
    folder = tmp_path_factory.mktemp("cli-compare")
    write_jsonl(folder / "train.jsonl", make_records(16))
    path = folder / "compare.yaml"
    path.write_text(COMPARE_YAML.format(folder=folder, model=tiny_llama), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def compared(comparison_file) -> Path:
    """The comparison folder after ``tunelab compare`` (options after the overrides, as users type them)."""
    assert main(["compare", str(comparison_file), "budget.steps=2", "--quiet"]) == 0
    return comparison_file.parent / "out"


def test_compare_prints_the_table_and_where_the_results_are(compared, comparison_file, capsys):
    assert main(["compare", "--quiet", str(comparison_file), "budget.steps=2"]) == 0  # finished: nothing trains
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["name", "method", "train_loss"]
    assert lines[1].startswith("lora") and "finished" in lines[1]
    assert lines[2].startswith("broken") and "failed: method.layers=99" in lines[2]
    assert f"results: {compared / 'results.json'}" in out and f"report:  {compared / 'report.html'}" in out
    records = json.loads((compared / "results.json").read_text(encoding="utf-8"))["records"]
    assert [(r["name"], r["steps"]) for r in records] == [("lora", 2), ("broken", None)]


def test_report_rebuilds_the_page_from_comparison_and_run_folders(compared, tmp_path, capsys):
    (compared / "report.html").unlink()
    assert main(["report", str(compared)]) == 0
    assert (compared / "report.html").is_file()

    assert main(["report", str(compared), str(compared / "runs" / "lora"), "--output", str(tmp_path / "both")]) == 0
    page = (tmp_path / "both" / "report.html").read_text(encoding="utf-8")
    assert 'data-entry="out/lora"' in page and 'data-entry="lora"' in page
    capsys.readouterr()

    assert main(["report", str(compared / "runs" / "lora")]) == EXIT_USAGE  # a run folder needs --output
    assert "give --output" in only_error_line(capsys)


@pytest.mark.parametrize(
    ("change", "extra", "expected"),
    [
        ({"budget": {"steps": 2, "tokens": 10}}, [], "exactly one of steps, tokens or epochs"),
        ({"entries": [{"name": "a", "method": "lora"}, {"name": "a", "method": "full"}]}, [], "must be unique"),
        ({}, ["base.train.lr=-1"], "entry 'lora': config error: train.lr"),
        ({}, ["--only", "nope"], "no entry named 'nope'"),
        ({}, ["base.data.train=missing.jsonl"], "entry 'lora': config error: data.train: file not found"),
    ],
    ids=["budget", "duplicate_names", "bad_value", "unknown_only", "missing_data"],
)
def test_a_bad_comparison_is_one_error_line_and_writes_nothing(
    comparison_file, tmp_path, capsys, change, extra, expected
):
    spec = {**yaml.safe_load(comparison_file.read_text(encoding="utf-8")), **change}
    spec["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")

    assert main(["compare", str(path), *extra]) == EXIT_USAGE
    assert expected in only_error_line(capsys)
    assert not (tmp_path / "out").exists()
