"""tunelab.data.formats: the format is recognised from the columns, columns can be mapped, bad rows are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tunelab.data.formats import check_columns, detect_format, format_dataset, format_row, rename_columns
from tunelab.data.loading import load_rows
from tunelab.errors import UserError

CHAT = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
]


@pytest.fixture()
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def write_jsonl_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["messages"], "chat"),
        (["instruction", "output"], "instruction"),
        (["instruction", "input", "output", "system"], "instruction"),
        (["prompt", "completion"], "prompt_completion"),
        (["text"], "text"),
        (["id", "prompt", "completion", "source"], "prompt_completion"),
        # a file with both: the richer format wins
        (["messages", "text"], "chat"),
        (["prompt", "completion", "text"], "prompt_completion"),
    ],
)
def test_format_is_detected_from_columns(columns, expected):
    assert detect_format(columns, Path("train.jsonl")) == expected


def test_format_is_detected_from_a_loaded_file(tmp_path):
    path = write_jsonl_lines(tmp_path / "alpaca.jsonl", [json.dumps({"instruction": "Say hi", "output": "hi"})])

    assert detect_format(load_rows(path).column_names, path) == "instruction"


@pytest.mark.parametrize("columns", [["question", "answer"], ["prompt"], ["instruction", "input"]])
def test_undetectable_columns_point_to_data_columns(columns):
    with pytest.raises(UserError) as caught:
        detect_format(columns, Path("train.jsonl"))

    message = str(caught.value)
    assert "train.jsonl" in message
    assert "cannot tell the data format" in message
    assert "data.columns" in message
    for column in columns:
        assert column in message


def test_check_columns_names_the_missing_field():
    with pytest.raises(UserError, match="format 'prompt_completion' needs field 'completion'"):
        check_columns(["prompt", "answer"], "prompt_completion", Path("train.jsonl"))


def test_column_mapping_renames_to_our_fields(tmp_path):
    path = write_jsonl_lines(
        tmp_path / "qa.jsonl",
        [json.dumps({"question": "Capital of France?", "answer": " Paris"})],
    )

    rows = rename_columns(load_rows(path), {"prompt": "question", "completion": "answer"}, path)

    assert sorted(rows.column_names) == ["completion", "prompt"]
    assert rows[0] == {"prompt": "Capital of France?", "completion": " Paris"}
    assert detect_format(rows.column_names, path) == "prompt_completion"


def test_column_mapping_replaces_a_column_already_named_like_our_field(tmp_path):
    # The file has an unrelated 'text' column; mapping text -> body must use 'body'.
    path = write_jsonl_lines(tmp_path / "docs.jsonl", [json.dumps({"text": "title", "body": "the real text"})])

    rows = rename_columns(load_rows(path), {"text": "body"}, path)

    assert rows["text"] == ["the real text"]


def test_column_mapping_can_swap_two_of_our_fields(tmp_path):
    # Training the reverse task (write the question for an answer) swaps the two columns.
    path = write_jsonl_lines(
        tmp_path / "qa.jsonl", [json.dumps({"prompt": "Capital of France?", "completion": "Paris"})]
    )

    rows = rename_columns(load_rows(path), {"prompt": "completion", "completion": "prompt"}, path)

    assert rows[0] == {"prompt": "Paris", "completion": "Capital of France?"}


def test_column_mapping_to_a_missing_column_is_named(tmp_path):
    path = write_jsonl_lines(tmp_path / "qa.jsonl", [json.dumps({"question": "q", "answer": "a"})])

    with pytest.raises(UserError, match="data.columns.completion names column 'reply'"):
        rename_columns(load_rows(path), {"prompt": "question", "completion": "reply"}, path)


def test_missing_field_names_the_file_line_and_field(tmp_path, tokenizer):
    path = write_jsonl_lines(
        tmp_path / "train.jsonl",
        [
            json.dumps({"prompt": "a", "completion": " b"}),
            "",  # blank lines count for the line number the user sees
            json.dumps({"prompt": "c", "completion": " d"}),
            json.dumps({"prompt": "e"}),
        ],
    )
    rows = load_rows(path)

    with pytest.raises(UserError) as caught:
        format_dataset(rows, "prompt_completion", tokenizer, path, train_on_prompt=False)

    message = str(caught.value)
    assert str(path) in message
    assert "line 4" in message
    assert "missing field 'completion'" in message


def test_non_string_field_is_named(tokenizer):
    with pytest.raises(UserError, match="field 'completion' must be a string, got list"):
        format_row({"prompt": "a", "completion": [3]}, "prompt_completion", tokenizer, train_on_prompt=False)


def test_numbers_become_text_as_a_csv_of_numbers_needs(tmp_path, tokenizer):
    path = tmp_path / "sums.csv"
    path.write_text("prompt,completion\n2+2=,4\n3+3=,6\n")
    rows = load_rows(path)
    formatted = format_dataset(rows, "prompt_completion", tokenizer, path, train_on_prompt=False)
    assert [example.text for example in formatted] == ["2+2=4", "3+3=6"]


def test_message_with_a_bad_role_is_named(tmp_path, tokenizer):
    path = write_jsonl_lines(
        tmp_path / "chat.jsonl",
        [
            json.dumps({"messages": CHAT}),
            json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Hello"}]}),
        ],
    )

    with pytest.raises(UserError) as caught:
        format_dataset(load_rows(path), "chat", tokenizer, path, train_on_prompt=False)

    message = str(caught.value)
    assert "line 2" in message
    assert "messages[1].role must be one of system, user, assistant" in message


def test_chat_without_an_assistant_message_is_an_error(tokenizer):
    row = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}

    with pytest.raises(UserError, match="no assistant message"):
        format_row(row, "chat", tokenizer, train_on_prompt=False)


def test_empty_messages_is_an_error(tokenizer):
    with pytest.raises(UserError, match="non-empty list"):
        format_row({"messages": []}, "chat", tokenizer, train_on_prompt=False)


def test_prompt_completion_targets_the_completion_only(tokenizer):
    example = format_row({"prompt": "Q: 2+2?", "completion": " 4"}, "prompt_completion", tokenizer, False)

    assert example.text == "Q: 2+2? 4"
    assert [example.text[start:end] for start, end in example.target_spans] == [" 4"]
    assert example.append_eos


def test_train_on_prompt_targets_the_whole_text(tokenizer):
    example = format_row({"prompt": "Q: 2+2?", "completion": " 4"}, "prompt_completion", tokenizer, True)

    assert example.target_spans == ((0, len(example.text)),)


def test_text_targets_everything_and_ends_with_eos(tokenizer):
    example = format_row({"text": "Once upon a time."}, "text", tokenizer, False)

    assert example.target_spans == ((0, len("Once upon a time.")),)
    assert example.append_eos


def test_instruction_is_rendered_as_a_chat_with_input_and_system(tokenizer):
    row = {"instruction": "Translate to French", "input": "cat", "output": "chat", "system": "Be exact."}

    example = format_row(row, "instruction", tokenizer, train_on_prompt=False)

    assert "Be exact." in example.text
    assert "Translate to French\n\ncat" in example.text
    assert [example.text[start:end] for start, end in example.target_spans][0].startswith("chat</s>")
    assert not example.append_eos  # the template already ended the turn with EOS
