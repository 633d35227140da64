"""Tokenizer training: bpe and char folders reload with AutoTokenizer and round-trip text exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.errors import UserError
from tunelab.tokenization.training import read_training_texts, train_tokenizer

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]

CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n"
    "  indented line\twith a tab; naïve café, 😀 and 日本語.\r\n"
) * 20


@pytest.fixture()
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_bytes(CORPUS.encode("utf-8"))  # bytes: keep the \r\n as written
    return path


def load(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def round_trip(tokenizer, text: str) -> str:
    return tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)


def test_bpe_reloads_and_round_trips_any_text(corpus_file, tmp_path):
    result = train_tokenizer([corpus_file], tmp_path / "tok", kind="bpe", vocab_size=300)
    tokenizer = load(result.output)

    assert result.kind == "bpe"
    assert len(tokenizer) == result.vocab_size <= 300
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == SPECIALS
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) == (
        "<pad>",
        "<s>",
        "</s>",
        "<unk>",
    )
    unseen = "  Zebra\n\n\tquiz ☃ ∑ 🚀 Ωμέγα\r\nend  "  # characters the corpus never had: bytes cover them
    for text in (CORPUS, unseen, "\n", " "):
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id  # BOS like Llama
        assert tokenizer.unk_token_id not in ids
        assert round_trip(tokenizer, text) == text
    assert tokenizer.decode(tokenizer(unseen, add_special_tokens=False)["input_ids"]) == unseen


def test_bpe_vocab_size_is_an_upper_bound_that_merges_fill(corpus_file, tmp_path):
    small = train_tokenizer([corpus_file], tmp_path / "small", vocab_size=270)
    large = train_tokenizer([corpus_file], tmp_path / "large", vocab_size=320)
    assert len(load(small.output)) == 270
    assert 270 < len(load(large.output)) <= 320


def test_char_vocab_is_the_distinct_characters_and_round_trips(corpus_file, tmp_path):
    result = train_tokenizer([corpus_file], tmp_path / "char", kind="char")
    tokenizer = load(result.output)

    vocab = tokenizer.get_vocab()
    expected = SPECIALS + sorted(set(CORPUS))
    assert sorted(vocab, key=vocab.get) == expected
    assert len(tokenizer) == result.vocab_size == len(expected)
    assert tokenizer.pad_token_id == 0 and tokenizer.unk_token == "<unk>"

    ids = tokenizer(CORPUS)["input_ids"]
    assert len(ids) == len(CORPUS)  # one token per character, no BOS
    assert tokenizer.decode(ids) == CORPUS
    assert tokenizer.convert_ids_to_tokens(tokenizer("a  \n\n")["input_ids"]) == ["a", " ", " ", "\n", "\n"]
    assert tokenizer.convert_ids_to_tokens(tokenizer("aZ🚀")["input_ids"]) == ["a", "<unk>", "<unk>"]


def test_char_bos_is_optional(corpus_file, tmp_path):
    tokenizer = load(train_tokenizer([corpus_file], tmp_path / "char", kind="char", add_bos=True).output)
    ids = tokenizer("speak")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 6
    assert round_trip(tokenizer, "speak\n") == "speak\n"


def test_structured_files_give_their_text_fields(tmp_path):
    rows = [
        {"text": "plain text", "id": 7},
        {"prompt": "Q: two?", "completion": " 2"},
        {"instruction": "Add", "input": "1 and 1", "output": "2"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ]
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    csv = tmp_path / "pairs.csv"
    csv.write_text("prompt,completion\nsix?,6\n", encoding="utf-8")

    texts = read_training_texts([jsonl, csv])
    assert sorted(texts) == sorted(["plain text", "Q: two?", " 2", "Add", "1 and 1", "2", "hi", "hello", "six?", "6"])

    tokenizer = load(train_tokenizer([jsonl, csv], tmp_path / "char", kind="char").output)
    assert set(tokenizer.get_vocab()) == set(SPECIALS) | set("".join(texts))


def test_output_is_refused_when_not_empty_unless_overwrite(corpus_file, tmp_path):
    output = tmp_path / "tok"
    output.mkdir()
    (output / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(UserError, match="not empty"):
        train_tokenizer([corpus_file], output, kind="char")
    assert (output / "keep.txt").exists()

    train_tokenizer([corpus_file], output, kind="char", overwrite=True)
    assert not (output / "keep.txt").exists()
    assert load(output).decode(load(output)("Speak")["input_ids"]) == "Speak"
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []  # no staging left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (b"  \n\n", "empty"),
        (b"caf\xe9\n", "not UTF-8"),
    ],
)
def test_bad_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as caught:
        train_tokenizer([path], tmp_path / "tok")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "tok").exists()


def test_structured_file_without_text_fields_names_the_file(tmp_path):
    path = tmp_path / "numbers.jsonl"
    path.write_text('{"a": 1}\n', encoding="utf-8")
    with pytest.raises(UserError, match="no text field") as caught:
        read_training_texts([path])
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "vocab_size", "message"),
    [
        ("bpe", 4, "too small"),
        ("bpe", 259, "at least 260"),
        ("char", 100, "does not apply"),
        ("word", None, "unknown tokenizer type"),
    ],
)
def test_bad_options_are_refused_before_reading(tmp_path, kind, vocab_size, message):
    with pytest.raises(UserError, match=message):
        train_tokenizer([tmp_path / "absent.txt"], tmp_path / "tok", kind=kind, vocab_size=vocab_size)
