"""tunelab.data.classification and prepare_classification_data: rows of text and label -> examples."""

from __future__ import annotations

import csv

import pytest
from transformers import AutoTokenizer

from conftest import make_labelled_records, write_jsonl
from tunelab.config.schema import DataConfig
from tunelab.data.classification import ClassificationExample
from tunelab.data.pipeline import prepare_classification_data
from tunelab.errors import UserError

WORDS = ["the", "a", "it", "was", "and", "we", "my", "this", "great", "love", "awful", "hate", "table", "window"]


@pytest.fixture()
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture(scope="module")
def bert_style_tokenizer():
    """A word-level tokenizer that wraps every text in [CLS] ... [SEP], as BERT's does."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )


def prepare(tokenizer, seed: int = 0, **config):
    return prepare_classification_data(DataConfig(**config), tokenizer, seed)


def encoded(items: list[ClassificationExample]) -> list[tuple[tuple[int, ...], int]]:
    return [(tuple(item.input_ids), item.label) for item in items]


def test_label_names_are_sorted_and_examples_point_at_them(tmp_path, tokenizer):
    rows = [
        {"text": "we love it", "label": "positive"},
        {"text": "it was awful", "label": "negative"},
        {"text": "a table", "label": "neutral"},
        {"text": "great", "label": "positive"},
    ]
    data = prepare(tokenizer, train=write_jsonl(tmp_path / "train.jsonl", rows))

    assert data.labels == ["negative", "neutral", "positive"]
    assert data.data_format == "classification"
    assert [data.labels[item.label] for item in data.train] == [row["label"] for row in rows]
    assert data.train[0].input_ids == tokenizer("we love it")["input_ids"]  # special tokens included
    assert data.train_examples == 4 and data.eval == []


def test_integer_labels_are_ordered_numerically(tmp_path, tokenizer):
    rows = [{"text": f"text {index}", "label": label} for index, label in enumerate([10, 2, 1, 2, 10])]
    data = prepare(tokenizer, train=write_jsonl(tmp_path / "train.jsonl", rows))

    assert data.labels == ["1", "2", "10"]  # not "1", "10", "2"
    assert [item.label for item in data.train] == [2, 1, 0, 1, 2]


def test_columns_mapping_reads_other_column_names(tmp_path, tokenizer):
    records = make_labelled_records(12)
    standard = prepare(tokenizer, train=write_jsonl(tmp_path / "train.jsonl", records))
    renamed_rows = [{"review": row["text"], "sentiment": row["label"], "label": "ignored"} for row in records]
    renamed = prepare(
        tokenizer,
        train=write_jsonl(tmp_path / "renamed.jsonl", renamed_rows),
        columns={"text": "review", "label": "sentiment"},
    )

    assert renamed.labels == standard.labels == ["negative", "neutral", "positive"]
    assert encoded(renamed.train) == encoded(standard.train)


def test_a_csv_file_gives_the_same_examples_as_jsonl(tmp_path, tokenizer):
    records = make_labelled_records(12)
    path = tmp_path / "train.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(records)

    from_csv = prepare(tokenizer, train=path)
    from_jsonl = prepare(tokenizer, train=write_jsonl(tmp_path / "train.jsonl", records))

    assert from_csv.labels == from_jsonl.labels
    assert encoded(from_csv.train) == encoded(from_jsonl.train)


def test_an_eval_label_outside_the_training_labels_names_file_line_and_field(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(12))
    eval_path = tmp_path / "eval.jsonl"
    # a blank line first: the error must give the line in the file, not the row's index
    eval_path.write_text(
        '{"text": "we love it", "label": "positive"}\n'
        "\n"
        '{"text": "a table", "label": "neutral"}\n'
        '{"text": "my window", "label": "mixed"}\n',
        encoding="utf-8",
    )

    with pytest.raises(UserError) as caught:
        prepare(tokenizer, train=train, eval=eval_path)

    message = str(caught.value)
    assert str(eval_path) in message
    assert "line 4" in message
    assert "'label'" in message and "mixed" in message
    assert "negative, neutral, positive" in message  # the labels it could have been


def test_eval_may_hold_fewer_labels_and_keeps_the_training_indices(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(12))
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"text": "great", "label": "positive"}])

    data = prepare(tokenizer, train=train, eval=eval_path)

    assert data.labels == ["negative", "neutral", "positive"]
    assert [item.label for item in data.eval] == [2]


def test_an_empty_text_is_a_clear_error(tmp_path, tokenizer):
    rows = [{"text": "we love it", "label": "positive"}, {"text": "  ", "label": "negative"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)

    with pytest.raises(UserError, match=r"line 2: field 'text' is empty") as caught:
        prepare(tokenizer, train=path)
    assert str(path) in str(caught.value)


def test_an_empty_label_is_a_clear_error(tmp_path, tokenizer):
    rows = [{"text": "we love it", "label": "positive"}, {"text": "it was awful", "label": None}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)

    with pytest.raises(UserError, match=r"line 2: field 'label' is empty"):
        prepare(tokenizer, train=path)


def test_a_missing_label_column_says_how_to_map_one(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "we love it", "sentiment": "positive"}] * 3)

    with pytest.raises(UserError) as caught:
        prepare(tokenizer, train=path)

    message = str(caught.value)
    assert str(path) in message and "'label' column" in message
    assert "data.columns.label" in message


def test_a_single_label_is_not_a_classification(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "we love it", "label": "positive"}] * 3)

    with pytest.raises(UserError, match="at least two labels"):
        prepare(tokenizer, train=path)


OVERLONG_ROWS = [
    {"text": "we love it", "label": "positive"},
    {"text": "the a it was and we my this awful", "label": "negative"},  # 9 words + [CLS] [SEP]
    {"text": "a table", "label": "neutral"},
]


def test_overlong_texts_are_truncated_keeping_the_closing_special_token(tmp_path, bert_style_tokenizer):
    tokenizer = bert_style_tokenizer
    data = prepare(tokenizer, train=write_jsonl(tmp_path / "train.jsonl", OVERLONG_ROWS), max_length=6)

    assert len(data.train) == data.train_examples == 3
    long = data.train[1].input_ids
    assert len(long) == 6
    assert long[0] == tokenizer.cls_token_id and long[-1] == tokenizer.sep_token_id
    assert tokenizer.convert_ids_to_tokens(long[1:-1]) == ["the", "a", "it", "was"]  # the start of the text
    assert data.train[0].input_ids == tokenizer("we love it")["input_ids"]  # short texts untouched
    assert any("1 of 3" in warning and "truncated" in warning for warning in data.warnings)


def test_overlong_texts_are_dropped_when_asked(tmp_path, bert_style_tokenizer):
    data = prepare(
        bert_style_tokenizer,
        train=write_jsonl(tmp_path / "train.jsonl", OVERLONG_ROWS),
        max_length=6,
        overlong="drop",
    )

    assert data.train_examples == 2
    assert [data.labels[item.label] for item in data.train] == ["positive", "neutral"]
    assert data.labels == ["negative", "neutral", "positive"]  # the label set is still the file's
    assert any("1 of 3" in warning and "dropped" in warning for warning in data.warnings)


def test_eval_split_holds_out_a_seeded_share(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(48))
    everything = encoded(prepare(tokenizer, train=path).train)

    first = prepare(tokenizer, train=path, eval_split=0.25)
    again = prepare(tokenizer, train=path, eval_split=0.25)
    other = prepare(tokenizer, seed=1, train=path, eval_split=0.25)

    assert len(first.eval) == 12 and len(first.train) == first.train_examples == 36
    assert sorted(encoded(first.train) + encoded(first.eval)) == sorted(everything)
    assert encoded(again.eval) == encoded(first.eval)
    assert encoded(other.eval) != encoded(first.eval)
    assert first.labels == ["negative", "neutral", "positive"]
