"""bench/random_weights.py: a model folder's shapes and tokenizer with seeded random weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "random_weights.py"


@pytest.fixture(scope="module")
def random_weights():
    spec = importlib.util.spec_from_file_location("random_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copy_keeps_shapes_and_tokenizer_with_new_seeded_weights(random_weights, tiny_llama, tmp_path):
    random_weights.save_random_copy(tiny_llama, tmp_path / "a", seed=7)
    random_weights.save_random_copy(tiny_llama, tmp_path / "b", seed=7)

    source = load_file(tiny_llama / "model.safetensors")
    copy_a = load_file(tmp_path / "a" / "model.safetensors")
    copy_b = load_file(tmp_path / "b" / "model.safetensors")
    assert {name: tensor.shape for name, tensor in copy_a.items()} == {
        name: tensor.shape for name, tensor in source.items()
    }
    name = next(name for name in source if name.endswith("q_proj.weight"))
    assert not torch.equal(copy_a[name], source[name])  # new weights (the fixture was built with seed 0)...
    assert all(torch.equal(copy_a[key], copy_b[key]) for key in copy_a)  # ...the same for the same seed
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tiny_llama / "tokenizer.json").read_bytes()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging left


def test_an_existing_folder_is_refused_and_left_as_it_was(random_weights, tiny_llama, tmp_path):
    output = tmp_path / "kept"
    output.mkdir()
    (output / "note.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(SystemExit, match="exists"):
        random_weights.save_random_copy(tiny_llama, output)
    assert [path.name for path in output.iterdir()] == ["note.txt"]


def test_a_failed_write_leaves_no_folder_behind(random_weights, tiny_llama, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(random_weights.shutil, "copy2", disk_full)
    with pytest.raises(OSError, match="No space"):
        random_weights.save_random_copy(tiny_llama, tmp_path / "copy")
    assert list(tmp_path.iterdir()) == []
