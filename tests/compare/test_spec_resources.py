"""``resources`` in a comparison file: what an entry's Ray task asks for, read from ``base`` and the
entry (the entry's keys winning), kept out of the train config, carried to every seed's run; a bad
value is one line naming the file and the entry. Needs no Ray."""

from __future__ import annotations

import json

import pytest

from conftest import write_comparison
from tunelab.compare.spec import Resources, load_comparison
from tunelab.errors import UserError


def comparison(tmp_path, entries, base_resources=None, seeds=1):
    path = write_comparison(tmp_path / "c.json", tmp_path / "out", tmp_path, tmp_path / "train.jsonl", entries)
    tree = json.loads(path.read_text())
    if base_resources is not None:
        tree["base"]["resources"] = base_resources
    tree["seeds"] = seeds
    path.write_text(json.dumps(tree))
    return path


def test_an_entry_asks_for_its_own_resources_over_the_base_ones(tmp_path):
    entries = [
        {"name": "lora", "method": "lora"},
        {"name": "full", "method": "full", "resources": {"gpus": 1}},
        {"name": "ia3", "method": "ia3", "resources": {"cpus": 0.5, "gpus": 0.25}},
    ]
    spec = load_comparison(comparison(tmp_path, entries, base_resources={"cpus": 2}))
    asked = {entry.name: entry.resources for entry in spec.entries}
    assert asked == {"lora": Resources(2.0), "full": Resources(2.0, 1.0), "ia3": Resources(0.5, 0.25)}
    assert all("resources" not in entry.tree for entry in spec.entries), "not a train config key"


def test_without_resources_the_executor_decides(tmp_path):
    (entry,) = load_comparison(comparison(tmp_path, [{"name": "lora", "method": "lora"}])).entries
    assert entry.resources == Resources(None, None)


def test_every_seed_run_is_its_own_entry_with_the_entry_resources(tmp_path):
    entries = [{"name": "lora", "method": "lora", "resources": {"cpus": 3}}]
    spec = load_comparison(comparison(tmp_path, entries, seeds=2))
    assert [(entry.name, entry.resources) for entry in spec.entries] == [
        ("lora.seed0", Resources(3.0)),
        ("lora.seed1", Resources(3.0)),
    ]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"tpus": 1}, "entry 'lora': resources: unknown key 'tpus' (resources take cpus, gpus)"),
        ({"cpus": 0}, "entry 'lora': resources.cpus must be a positive number (got 0)"),
        ({"gpus": -1}, "entry 'lora': resources.gpus must be a positive number (got -1)"),
        ({"cpus": "two"}, "entry 'lora': resources.cpus must be a positive number (got 'two')"),
        ({"gpus": True}, "entry 'lora': resources.gpus must be a positive number (got True)"),
        ([2, 1], "entry 'lora': resources must be a mapping (e.g. resources: {cpus: 2, gpus: 1})"),
    ],
)
def test_a_bad_resources_value_is_one_line_naming_the_file_and_the_entry(tmp_path, resources, message):
    path = comparison(tmp_path, [{"name": "lora", "method": "lora", "resources": resources}])
    with pytest.raises(UserError) as refused:
        load_comparison(path)
    assert str(refused.value) == f"{path}: {message}"


def test_a_bad_base_resources_value_names_base(tmp_path):
    path = comparison(tmp_path, [{"name": "lora", "method": "lora"}], base_resources={"cpus": 1, "memory": 4})
    with pytest.raises(UserError) as refused:
        load_comparison(path)
    assert str(refused.value) == f"{path}: base: resources: unknown key 'memory' (resources take cpus, gpus)"
