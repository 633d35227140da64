"""tunelab.data.loading: every supported file type loads as rows; a bad file names itself and the line."""

from __future__ import annotations

import csv
import json

import pytest

from tunelab.data.loading import load_rows
from tunelab.errors import UserError

ROWS = [
    {"prompt": "What is the capital of France?", "completion": " Paris"},
    {"prompt": "Say robot:", "completion": " robot robot"},
    {"prompt": "Count to three:", "completion": " 1 2 3"},
]


def write_lines(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_jsonl_loads_every_row_in_order(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(row) for row in ROWS])

    rows = load_rows(path)

    assert rows.to_list() == ROWS


def test_jsonl_skips_blank_lines(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(ROWS[0]), "", "   ", json.dumps(ROWS[1])])

    assert load_rows(path).to_list() == ROWS[:2]


def test_json_array_loads_as_rows(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")

    assert load_rows(path).to_list() == ROWS


def test_csv_loads_as_rows(tmp_path):
    path = tmp_path / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt", "completion"])
        writer.writeheader()
        writer.writerows(ROWS)

    assert load_rows(path).to_list() == ROWS


def test_parquet_loads_as_rows(tmp_path):
    pandas = pytest.importorskip("pandas")
    path = tmp_path / "train.parquet"
    pandas.DataFrame(ROWS).to_parquet(path)

    assert load_rows(path).to_list() == ROWS


def test_txt_loads_one_text_row_per_non_blank_line(tmp_path):
    path = write_lines(tmp_path / "corpus.txt", ["Once upon a time.", "", "   ", "The end."])

    rows = load_rows(path)

    assert rows.column_names == ["text"]
    assert rows["text"] == ["Once upon a time.", "The end."]


def test_path_given_as_string_is_accepted(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(ROWS[0])])

    assert load_rows(str(path)).to_list() == ROWS[:1]


def test_malformed_jsonl_line_names_the_file_and_the_line(tmp_path):
    path = write_lines(
        tmp_path / "train.jsonl",
        [json.dumps(ROWS[0]), json.dumps(ROWS[1]), '{"prompt": "cut off", ', json.dumps(ROWS[2])],
    )

    with pytest.raises(UserError) as caught:
        load_rows(path)

    message = str(caught.value)
    assert str(path) in message
    assert "line 3" in message
    assert "invalid JSON" in message


def test_malformed_line_number_counts_blank_lines(tmp_path):
    # The user opens the file in an editor: the number must be the file's line, not the row index.
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(ROWS[0]), "", json.dumps(ROWS[1]), "{not json}"])

    with pytest.raises(UserError, match="line 4"):
        load_rows(path)


@pytest.mark.parametrize(("line", "kind"), [("[1, 2]", "list"), ('"just text"', "str"), ("5", "int")])
def test_jsonl_line_that_is_not_an_object_is_named(tmp_path, line, kind):
    path = write_lines(tmp_path / "train.jsonl", [json.dumps(ROWS[0]), line, json.dumps(ROWS[1])])

    with pytest.raises(UserError) as caught:
        load_rows(path)

    message = str(caught.value)
    assert str(path) in message
    assert "line 2" in message
    assert f"expected a JSON object, got {kind}" in message


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("", encoding="utf-8")

    with pytest.raises(UserError, match="the file is empty") as caught:
        load_rows(path)
    assert str(path) in str(caught.value)


def test_txt_of_only_blank_lines_is_an_empty_dataset(tmp_path):
    path = write_lines(tmp_path / "corpus.txt", ["", "   ", "\t", ""])

    with pytest.raises(UserError, match="is empty") as caught:
        load_rows(path)
    assert str(path) in str(caught.value)


def test_unsupported_suffix_is_named(tmp_path):
    path = tmp_path / "train.xlsx"
    path.write_bytes(b"not a spreadsheet")

    with pytest.raises(UserError, match=r"unsupported file type '\.xlsx'"):
        load_rows(path)


def test_missing_file_is_an_error(tmp_path):
    path = tmp_path / "nowhere.jsonl"

    with pytest.raises(UserError, match="file not found") as caught:
        load_rows(path)
    assert str(path) in str(caught.value)


def test_rows_are_counted_as_loading_sees_them_without_loading(tmp_path):
    from tunelab.data.loading import count_rows

    array = tmp_path / "rows.json"
    array.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")  # one row spans several lines
    lines = write_lines(tmp_path / "rows.jsonl", [json.dumps(row) for row in ROWS] + [""])
    with (tmp_path / "rows.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt", "completion"])
        writer.writeheader()
        writer.writerows(ROWS)
    for path in (array, lines, tmp_path / "rows.csv"):
        assert count_rows(path) == len(load_rows(path)) == 3, path
