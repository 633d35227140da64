"""A method names the train settings it works with; what the user leaves unset takes them, by task."""

from __future__ import annotations

import pytest
import yaml

from conftest import write_comparison
from tunelab.compare.spec import entry_config, load_comparison
from tunelab.methods.base import Method
from tunelab.methods.config_loading import load_config
from tunelab.methods.listing import format_listing, list_methods
from tunelab.methods.registry import available_methods


def config_for(method: str, task: str = "causal_lm", *overrides: str):
    extra = ["data.format=classification"] if task == "classification" else []
    return load_config(None, ["model=./m", f"method.name={method}", f"task={task}", *extra, *overrides])


@pytest.mark.parametrize(
    ("method", "task", "lr"),
    [("features", "classification", 3e-2), ("lora", "classification", 2e-3), ("lora", "causal_lm", 1e-3),
     ("full", "classification", 1e-4), ("prompt", "causal_lm", 3e-2), ("zeroshot", "causal_lm", 2e-4)],
)  # fmt: skip
def test_an_unset_learning_rate_is_the_methods_own(method, task, lr):
    assert config_for(method, task).train.lr == lr


def test_a_head_on_frozen_features_trains_several_epochs_unless_told_otherwise():
    assert config_for("features", "classification").train.epochs == 5
    assert config_for("features", "classification", "train.epochs=2").train.epochs == 2
    assert config_for("lora", "classification").train.epochs == 1


def test_what_the_user_sets_wins_and_the_resolved_value_is_recorded():
    assert config_for("full", "causal_lm", "train.lr=3e-5", "train.weight_decay=0").train.lr == 3e-5
    plain = config_for("full").to_plain()
    assert (plain["train"]["lr"], plain["train"]["weight_decay"]) == (1e-4, 0.01)


def test_a_comparison_without_learning_rates_gives_each_entry_its_methods(tmp_path):
    entries = [{"name": name, "method": name} for name in ("full", "lora", "prompt", "ia3")]
    spec_file = write_comparison(tmp_path / "c.yaml", tmp_path / "out", tmp_path, tmp_path / "t.jsonl", entries)
    lrs = {entry.name: entry_config(entry).train.lr for entry in load_comparison(spec_file).entries}
    assert lrs == {"full": 1e-4, "lora": 1e-3, "prompt": 3e-2, "ia3": 1e-2}
    tree = yaml.safe_load(spec_file.read_text())
    tree["base"]["train"] = {"lr": 5e-4}  # a base learning rate is the user's: every entry takes it
    spec_file.write_text(yaml.safe_dump(tree))
    assert {entry_config(entry).train.lr for entry in load_comparison(spec_file).entries} == {5e-4}


def test_every_trained_method_recommends_a_learning_rate_for_each_task_it_trains():
    for method in available_methods().values():
        if isinstance(method, Method):
            assert all("lr" in method.recommended_train(task) for task in method.tasks), method.name


def test_tunelab_methods_shows_the_defaults():
    assert "defaults: causal_lm lr 0.001; classification lr 0.002" in format_listing(list_methods())
