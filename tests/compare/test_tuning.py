"""Tuning inside a comparison: a validation split carved from the training data, one short trial per
learning rate, the best kept for the final run; every trial's figure and time in the record."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import write_comparison
from tunelab.compare.report import format_table
from tunelab.compare.runner import run_comparison
from tunelab.compare.spec import entry_config, load_comparison
from tunelab.compare.tuning import validation_split
from tunelab.errors import UserError


def comparison(tmp_path, model, train_file, entries, steps=8):
    return write_comparison(tmp_path / "c.yaml", tmp_path / "out", model, train_file, entries, steps)


def test_the_spec_reads_a_grid_or_auto_and_refuses_a_fixed_lr_beside_it(tmp_path, prompt_completion_file):
    entries = [
        {"name": "lora", "method": "lora", "tune": {"lr": [1e-4, 1e-3]}},
        {"name": "prompt", "method": "prompt", "tune": "auto"},
        {"name": "full", "method": "full"},
    ]
    spec = load_comparison(comparison(tmp_path, tmp_path, prompt_completion_file, entries))
    grids = {entry.name: entry.tune_lr for entry in spec.entries}
    assert grids == {"lora": (1e-4, 1e-3), "prompt": pytest.approx((1e-2, 3e-2, 9e-2)), "full": ()}

    tree = yaml.safe_load((tmp_path / "c.yaml").read_text())
    tree["entries"][0]["train"] = {"lr": 1e-3}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(UserError, match="entry 'lora': train.lr and tune both set the learning rate"):
        load_comparison(tmp_path / "c.yaml")
    tree["entries"][0].pop("train")
    tree["entries"][0]["tune"] = {"lr": [0]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tree))
    with pytest.raises(UserError, match="tune must be 'auto' or"):
        load_comparison(tmp_path / "c.yaml")


def test_the_validation_split_is_stratified_seeded_and_disjoint(tmp_path, labelled_data):
    train_file, _ = labelled_data
    entries = [{"name": "lora", "method": "lora", "tune": "auto"}]
    path = comparison(tmp_path, tmp_path, train_file, entries)
    tree = yaml.safe_load(path.read_text())
    tree["base"].update({"task": "classification"})
    path.write_text(yaml.safe_dump(tree))
    config = entry_config(load_comparison(path).entries[0])
    rest, held = validation_split(config, tmp_path / "split")
    rows = [json.loads(line) for line in train_file.read_text().splitlines()]
    rest_rows = [json.loads(line) for line in rest.read_text().splitlines()]
    held_rows = [json.loads(line) for line in held.read_text().splitlines()]
    assert len(rest_rows) + len(held_rows) == len(rows) and len(held_rows) == pytest.approx(0.2 * len(rows), abs=3)
    assert {row["label"] for row in held_rows} == {row["label"] for row in rows}, "every label held out"
    assert not {row["text"] for row in held_rows} & {row["text"] for row in rest_rows} - {""}
    again, _ = validation_split(config, tmp_path / "split2")
    assert again.read_text() == rest.read_text(), "the same seed, the same split"


def test_a_tuned_entry_trains_with_the_best_trial_and_records_every_one(tiny_llama, prompt_completion_file, tmp_path):
    entries = [{"name": "lora", "method": "lora", "tune": {"lr": [1e-6, 3e-2]}}]
    result = run_comparison(
        load_comparison(comparison(tmp_path, tiny_llama, prompt_completion_file, entries)), progress=False
    )
    (record,) = result.records
    tuning = record["tuning"]
    assert [trial["lr"] for trial in tuning["trials"]] == [1e-6, 3e-2]
    assert all(trial["steps"] == 2 for trial in tuning["trials"]), "a quarter of the 8-step budget"
    losses = {trial["lr"]: trial["eval_loss"] for trial in tuning["trials"]}
    assert tuning["chosen"] == min(losses, key=losses.get) == 3e-2
    final = yaml.safe_load((tmp_path / "out" / "runs" / "lora" / "config.yaml").read_text())
    assert final["train"]["lr"] == 3e-2 and final["data"]["train"] == str(prompt_completion_file)
    assert json.loads((tmp_path / "out" / "runs" / "lora" / "summary.json").read_text())["steps"] == 8
    assert tuning["tuning_time_s"] > 0
    assert "tuned lr" in format_table(result.records).splitlines()[0]
