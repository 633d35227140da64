"""The comparison file: entries are the base with their own keys merged over it and the shared
budget and seed; overrides reach any key; every mistake is one line naming the entry or key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tunelab.compare.spec import entry_config, load_comparison
from tunelab.errors import UserError


def spec_tree(tmp_path: Path) -> dict:
    return {
        "output_dir": str(tmp_path / "cmp"),
        "base": {"model": "./model", "data": {"train": "train.jsonl"}, "train": {"batch_size": 8, "lr": 2e-4}},
        "budget": {"steps": 40},
        "entries": [
            {"name": "lora-r8", "method": {"name": "lora", "r": 8}},
            {"name": "full", "method": "full", "train": {"lr": 5e-5}},
        ],
    }


def write_spec(tmp_path: Path, tree: dict) -> Path:
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def test_entries_are_the_base_with_their_own_keys_and_the_shared_budget(tmp_path):
    spec = load_comparison(write_spec(tmp_path, spec_tree(tmp_path)))

    assert [entry.name for entry in spec.entries] == ["lora-r8", "full"]
    lora, full = (entry_config(entry) for entry in spec.entries)
    assert (lora.method.name, lora.method.r, full.method.name) == ("lora", 8, "full")
    assert (lora.train.lr, full.train.lr) == (2e-4, 5e-5)
    assert lora.train.batch_size == full.train.batch_size == 8
    assert lora.train.max_steps == full.train.max_steps == 40 and lora.train.max_tokens is None
    assert lora.train.seed == full.train.seed == 0
    assert lora.train.save_every == 10  # four checkpoints per run, so an interrupted entry resumes
    assert lora.output_dir == tmp_path / "cmp" / "runs" / "lora-r8"


def test_overrides_reach_the_budget_the_base_an_entry_and_the_folder(tmp_path):
    overrides = [
        "budget.steps=10",
        "base.train.batch_size=4",
        "base.data.train=2024.jsonl",  # a path key keeps its text
        "entries.lora-r8.method.r=4",
        f"output_dir={tmp_path / 'elsewhere'}",
    ]
    spec = load_comparison(write_spec(tmp_path, spec_tree(tmp_path)), overrides)

    lora = entry_config(spec.entries[0])
    assert (lora.train.max_steps, lora.train.batch_size, lora.method.r) == (10, 4, 4)
    assert lora.data.train == Path("2024.jsonl")
    assert spec.output_dir == tmp_path / "elsewhere"
    assert spec.entries[1].run_dir == tmp_path / "elsewhere" / "runs" / "full"


def test_a_token_budget_sets_max_tokens_and_checkpoints_at_least_four_times(tmp_path):
    tree = spec_tree(tmp_path)
    tree["budget"] = {"tokens": 20000}
    tree["base"]["data"]["max_length"] = 128
    config = entry_config(load_comparison(write_spec(tmp_path, tree)).entries[0])

    assert (config.train.max_tokens, config.train.max_steps) == (20000, None)
    assert config.train.save_every == 20000 // (8 * 128) // 4


def test_an_epoch_budget_sets_epochs_for_every_entry_and_may_not_be_overridden(tmp_path):
    tree = spec_tree(tmp_path)
    tree["budget"] = {"epochs": 3}
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n' * 64, encoding="utf-8")
    tree["base"]["data"]["train"] = str(tmp_path / "train.jsonl")
    config = entry_config(load_comparison(write_spec(tmp_path, tree)).entries[0])
    assert (config.train.epochs, config.train.max_steps, config.train.max_tokens) == (3, None, None)
    assert config.train.save_every == 64 // 8 * 3 // 4  # about four checkpoints over 24 steps

    tree["entries"][1]["train"]["epochs"] = 5
    with pytest.raises(UserError, match=r"entry 'full': train\.epochs: the budget sets it \(budget\.epochs\)"):
        load_comparison(write_spec(tmp_path, tree))


def test_relative_output_dir_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    tree = spec_tree(tmp_path)
    tree["output_dir"] = "runs/demo"
    path = write_spec(tmp_path, tree)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_comparison(path).output_dir == tmp_path / "elsewhere" / "runs" / "demo"


def broken(tree: dict, path: str, value) -> dict:
    """The tree with ``value`` set at the dotted ``path`` (list items by index)."""
    *parents, last = path.split(".")
    node = tree
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return tree


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("entries.1.name", "lora-r8", "name 'lora-r8' must be unique"),
        ("entries.1.name", "has space", "name 'has space' must be unique and use letters"),
        ("entries.0.method", {"name": "lora", "r": -1}, "entry 'lora-r8': config error: method.r"),
        ("entries.1.train", {"batchsize": 3}, "entry 'full': config error: train.batchsize: unknown key"),
        ("entries.1.train", {"seed": 3}, "entry 'full': train.seed: every entry trains with the same seed"),
        ("entries.1.budget", {"steps": 3}, "entry 'full': budget: set by the comparison"),
        ("entries.1.output_dir", "x", "entry 'full': output_dir: set by the comparison"),
        ("entries.1", {"name": "nomethod"}, "entry 'nomethod': method: required"),
        ("entries.0.method", {"name": "nope"}, "entry 'lora-r8': config error: method"),
        ("base.train.max_steps", 5, "base: train.max_steps: the budget sets it"),
        ("base.train.resume", True, "base: train.resume"),
        ("base.method", "lora", "base: method"),
        ("base.task", "nope", "entry 'lora-r8': config error: task"),
        ("budget", {"steps": 4, "tokens": 100}, "exactly one of steps, tokens or epochs"),
        ("budget", {}, "exactly one of steps, tokens or epochs"),
        ("budget", {"steps": 0}, "budget.steps must be a positive whole number"),
        ("entries", [], "'entries' must be a non-empty list"),
        ("stages", [], "unknown key 'stages'"),
    ],
)
def test_mistakes_are_one_line_naming_the_entry_or_key(tmp_path, path, value, expected):
    path_to_spec = write_spec(tmp_path, broken(spec_tree(tmp_path), path, value))
    with pytest.raises(UserError, match=expected.replace(".", r"\.").replace("(", r"\(")) as caught:
        load_comparison(path_to_spec)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "cmp").exists()  # nothing is written before everything is valid


def test_a_missing_budget_and_an_override_for_an_unknown_entry_are_refused(tmp_path):
    tree = spec_tree(tmp_path)
    del tree["budget"]
    with pytest.raises(UserError, match="exactly one of steps, tokens or epochs"):
        load_comparison(write_spec(tmp_path, tree))
    with pytest.raises(UserError, match="no entry named 'nope'"):
        load_comparison(write_spec(tmp_path, spec_tree(tmp_path)), ["entries.nope.method.r=4"])
    with pytest.raises(UserError, match=r"give entries\.NAME\.key=value"):
        load_comparison(write_spec(tmp_path, spec_tree(tmp_path)), ["entries.full=x"])


def test_a_checkpoint_interval_of_ones_own_is_kept(tmp_path):
    tree = spec_tree(tmp_path)
    tree["entries"][1]["train"]["save_every"] = 7
    spec = load_comparison(write_spec(tmp_path, tree))
    assert [entry_config(entry).train.save_every for entry in spec.entries] == [10, 7]
