"""read_texts: the three file types, the field picked per role, and one-line errors naming the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.errors import UserError
from tunelab.metrics.files import read_texts


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_jsonl_takes_the_first_known_field(tmp_path):
    path = jsonl(
        tmp_path / "rows.jsonl",
        [
            {"prediction": "a", "output": "ref"},
            {"output": "b"},
            {"text": "c", "id": 3},
            {"generated": {"name": "x", "tags": ["é"]}},  # structured output becomes JSON text
        ],
    )

    assert read_texts(path, "predictions") == ["a", "b", "c", '{"name": "x", "tags": ["é"]}']


def test_the_same_file_can_hold_both_roles(tmp_path):
    path = jsonl(tmp_path / "pairs.jsonl", [{"prediction": "p1", "reference": "r1"}, {"prediction": 2, "label": 1}])

    assert read_texts(path, "predictions") == ["p1", "2"]
    assert read_texts(path, "references") == ["r1", "1"]


def test_jsonl_skips_blank_lines_and_keeps_a_line_separator_inside_a_string(tmp_path):
    path = write(tmp_path / "refs.jsonl", '{"answer": "x\u2028y"}\n\n   \n{"completion": "z"}\r\n')

    assert read_texts(path, "references") == ["x\u2028y", "z"]


def test_json_list_of_strings_or_objects(tmp_path):
    assert read_texts(write(tmp_path / "a.json", '["x", "y"]'), "references") == ["x", "y"]
    assert read_texts(write(tmp_path / "b.json", '[{"reference": "x"}, "y"]'), "references") == ["x", "y"]


def test_txt_is_one_text_per_line_and_an_inner_blank_line_is_an_empty_answer(tmp_path):
    path = write(tmp_path / "predictions.txt", "Paris\n\nRome\r\n\n\n")

    assert read_texts(path, "predictions") == ["Paris", "", "Rome"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("predictions.jsonl", '{"prediction": "a"}\n\n{"prediction": \n', "line 3: invalid JSON (Expecting value"),
        (
            "predictions.jsonl",
            '{"prediction": "a"}\n{"a": 1, "b": 2}\n',
            "line 2: no 'prediction' field (looked for prediction, output, generated, text; found: a, b)",
        ),
        ("predictions.jsonl", '["a"]\n', "line 1: expected a JSON object, got list"),
        ("predictions.jsonl", '{"prediction": null}\n', "line 1: 'prediction' is null"),
        ("predictions.json", '{"prediction": "a"}', ": expected a JSON list of strings or objects, got dict"),
        ("predictions.json", '["a", {"x": 1}]', "item 2: no 'prediction' field"),
        ("predictions.json", '["a",\n  oops]', "line 2: invalid JSON"),
        ("predictions.jsonl", "\n \n", ": no predictions in the file"),
        ("predictions.csv", "a\n", ": unsupported file type '.csv'"),
    ],
    ids=["bad_json", "no_field", "not_object", "null", "json_not_list", "json_item", "json_syntax", "empty", "suffix"],
)
def test_bad_input_names_the_file_and_line(tmp_path, name, content, message):
    path = write(tmp_path / name, content)

    with pytest.raises(UserError) as caught:
        read_texts(path, "predictions")

    text = str(caught.value)
    assert text.startswith(f"{path}") and message in text
    assert "\n" not in text


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(UserError, match="nope.txt: file not found"):
        read_texts(tmp_path / "nope.txt", "references")
    path = tmp_path / "refs.txt"
    path.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(UserError, match=r"refs.txt line 2: not UTF-8"):
        read_texts(path, "references")
