"""``seeds: N``: every entry trains N times (seed, seed+1, ...), results.json keeps every run, and the
table shows one row per entry with the mean +- standard deviation, marking entries tied with the best."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import write_comparison
from tunelab.compare.report import format_table
from tunelab.compare.results import FINISHED
from tunelab.compare.runner import run_comparison
from tunelab.compare.seeds import fold_seeds
from tunelab.compare.spec import load_comparison
from tunelab.errors import UserError


def seeded(name, seed, accuracy):
    return {
        "name": f"{name}.seed{seed}",
        "entry": name,
        "seed": seed,
        "status": FINISHED,
        "method": name,
        "task": "classification",
        "metrics": {"accuracy": accuracy},
        "trainable_params": 100,
        "train_time_s": 1.0,
    }


def test_seed_runs_fold_into_one_row_with_mean_spread_and_ties():
    records = [seeded("full", 0, 0.80), seeded("full", 1, 0.84), seeded("lora", 0, 0.79), seeded("lora", 1, 0.81)]
    records += [seeded("ia3", 0, 0.60), seeded("ia3", 1, 0.62)]
    folded = {record["name"]: record for record in fold_seeds(records)}
    assert folded["full"]["metrics"]["accuracy"] == pytest.approx(0.82)
    assert folded["full"]["metric_std"]["accuracy"] == pytest.approx(0.0282843, abs=1e-6)
    assert folded["full"]["seeds"] == [0, 1]
    assert folded["lora"]["tied"] is True  # 0.80 +- 0.014 overlaps 0.82 +- 0.028
    assert folded["ia3"]["tied"] is False
    lines = format_table(records).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["full", "lora", "ia3"]
    assert "0.8200 ± 0.0283" in lines[1] and "tied with the best" in lines[2] and "2 seeds" in lines[3]


def test_the_spec_expands_every_entry_per_seed(tmp_path):
    spec_file = write_comparison(tmp_path / "c.yaml", tmp_path / "out", tmp_path, tmp_path / "t.jsonl", [])
    tree = yaml.safe_load(spec_file.read_text())
    tree.update({"seeds": 3, "entries": [{"name": "lora", "method": "lora"}, {"name": "ia3", "method": "ia3"}]})
    tree["base"]["train"] = {"seed": 7}
    spec_file.write_text(yaml.safe_dump(tree))
    spec = load_comparison(spec_file)
    assert [entry.name for entry in spec.entries] == [f"{n}.seed{s}" for n in ("lora", "ia3") for s in (7, 8, 9)]
    assert [entry.tree["train"]["seed"] for entry in spec.runs_of("ia3")] == [7, 8, 9]
    assert spec.runs_of("lora")[1].run_dir == tmp_path / "out" / "runs" / "lora.seed8"
    with pytest.raises(UserError, match="seeds must be a whole number from 1 to 100"):
        load_comparison(spec_file, ["seeds=0"])


def test_a_seeded_comparison_keeps_every_run(tiny_llama, prompt_completion_file, tmp_path):
    entries = [{"name": "lora", "method": "lora"}, {"name": "ia3", "method": "ia3"}]
    spec_file = write_comparison(tmp_path / "c.yaml", tmp_path / "out", tiny_llama, prompt_completion_file, entries, 2)
    result = run_comparison(load_comparison(spec_file, ["seeds=2"]), progress=False)
    records = json.loads(result.results_json.read_text())
    records = records["records"] if isinstance(records, dict) else records
    assert [(r["entry"], r["seed"], r["status"]) for r in records] == [
        ("lora", 0, FINISHED), ("lora", 1, FINISHED), ("ia3", 0, FINISHED), ("ia3", 1, FINISHED)
    ]  # fmt: skip
    losses = [r["train_loss"] for r in records if r["entry"] == "lora"]
    assert losses[0] != losses[1], "each seed is its own run"
    table = format_table(result.records).splitlines()
    assert len(table) == 3 and all("2 seeds" in line for line in table[1:])
    page = result.report_html.read_text()
    rows = re.findall(r'<tr class="[^"]*" data-entry="([^"]*)"', page)
    assert sorted(rows) == ["ia3", "lora"], "the page's table has one row per entry too"
    assert "±" in page and "2 seeds" in page
    assert ">0.001<" in page and ">0.01<" in page  # each method's own learning rate, shown


def test_every_seeds_run_of_a_tuned_entry_tunes(tmp_path):
    spec_file = write_comparison(tmp_path / "c.yaml", tmp_path / "out", tmp_path, tmp_path / "t.jsonl", [])
    tree = yaml.safe_load(spec_file.read_text())
    tree.update({"seeds": 2, "entries": [{"name": "lora", "method": "lora", "tune": {"lr": [1e-3, 3e-3]}}]})
    spec_file.write_text(yaml.safe_dump(tree))
    runs = load_comparison(spec_file).runs_of("lora")
    assert [run.name for run in runs] == ["lora.seed0", "lora.seed1"]
    assert [run.tune_lr for run in runs] == [(1e-3, 3e-3), (1e-3, 3e-3)]  # tuning was silently dropped
