"""tunelab.data.pipeline: one call from a config to training and evaluation items."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from conftest import make_records, write_jsonl
from tunelab.config.schema import DataConfig
from tunelab.data.packing import PackedSequence
from tunelab.data.pipeline import prepare_data
from tunelab.data.tokenize import TokenizedExample
from tunelab.errors import UserError


@pytest.fixture()
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def ids(item: TokenizedExample) -> tuple[int, ...]:
    return tuple(item.input_ids)


def is_subsequence(part: list, whole: list) -> bool:
    remaining = iter(whole)
    return all(any(item == candidate for candidate in remaining) for item in part)


def test_prompt_completion_file_becomes_tokenized_examples(prompt_completion_file, tokenizer):
    data = prepare_data(DataConfig(train=prompt_completion_file), tokenizer, seed=0)

    assert data.data_format == "prompt_completion"
    assert len(data.train) == data.train_examples == 48
    assert all(isinstance(item, TokenizedExample) for item in data.train)
    assert data.eval == []
    assert data.warnings == []


def test_eval_split_holds_out_a_seeded_share(prompt_completion_file, tokenizer):
    config = DataConfig(train=prompt_completion_file, eval_split=0.25)
    everything = prepare_data(DataConfig(train=prompt_completion_file), tokenizer, seed=0).train

    first = prepare_data(config, tokenizer, seed=0)
    again = prepare_data(config, tokenizer, seed=0)
    other = prepare_data(config, tokenizer, seed=1)

    assert len(first.eval) == 12
    assert len(first.train) == first.train_examples == 36
    # Every example lands on exactly one side, and both sides keep the file's order.
    assert sorted(map(ids, [*first.train, *first.eval])) == sorted(map(ids, everything))
    assert is_subsequence(first.train, everything)
    assert is_subsequence(first.eval, everything)
    # Same seed, same split; another seed, another split.
    assert again.eval == first.eval
    assert other.eval != first.eval


def test_eval_split_never_takes_every_training_example(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", make_records(3))

    try:
        data = prepare_data(DataConfig(train=path, eval_split=0.9), tokenizer, seed=0)
    except UserError:
        return  # refusing the split is as good as keeping an example
    assert len(data.train) >= 1


def test_eval_split_needs_two_examples(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "train.jsonl", make_records(1))

    with pytest.raises(UserError, match="eval_split needs at least 2 examples"):
        prepare_data(DataConfig(train=path, eval_split=0.5), tokenizer, seed=0)


def test_eval_file_is_tokenized_like_train(prompt_completion_file, tmp_path, tokenizer):
    eval_path = write_jsonl(tmp_path / "eval.jsonl", make_records(5, seed=7))

    data = prepare_data(DataConfig(train=prompt_completion_file, eval=eval_path), tokenizer, seed=0)

    assert len(data.train) == 48
    assert len(data.eval) == 5


def test_eval_file_in_another_format_is_an_error(prompt_completion_file, tmp_path, tokenizer):
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [{"text": "Once upon a time."}, {"text": "The end."}])

    with pytest.raises(UserError) as caught:
        prepare_data(DataConfig(train=prompt_completion_file, eval=eval_path), tokenizer, seed=0)

    message = str(caught.value)
    assert str(eval_path) in message
    assert "format 'text' differs from the training data's 'prompt_completion'" in message


def test_packing_gives_packed_sequences_and_counts_examples(prompt_completion_file, tokenizer):
    config = DataConfig(train=prompt_completion_file, eval_split=0.25, packing=True, max_length=64)
    unpacked = prepare_data(config.model_copy(update={"packing": False}), tokenizer, seed=0)

    data = prepare_data(config, tokenizer, seed=0)

    assert all(isinstance(item, PackedSequence) for item in [*data.train, *data.eval])
    assert all(len(item.input_ids) <= 64 for item in [*data.train, *data.eval])
    assert len(data.train) < data.train_examples == 36
    assert sum(item.example_count for item in data.train) == 36
    assert sum(item.example_count for item in data.eval) == 12
    # The same examples as without packing (best-fit packing groups them by length).
    assert sorted(examples_of(data.train)) == sorted(item.input_ids for item in unpacked.train)


def examples_of(packed: list[PackedSequence]) -> list[list[int]]:
    """Each packed example's tokens, cut where the positions restart."""
    examples = []
    for sequence in packed:
        starts = [index for index, position in enumerate(sequence.position_ids) if position == 0]
        for start, end in zip(starts, [*starts[1:], len(sequence.input_ids)], strict=True):
            examples.append(sequence.input_ids[start:end])
    return examples


def test_column_mapping_and_explicit_format(tmp_path, tokenizer):
    rows = [{"question": f"What is {n} plus {n}?", "answer": f" {2 * n}"} for n in range(4)]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    config = DataConfig(train=path, format="prompt_completion", columns={"prompt": "question", "completion": "answer"})

    data = prepare_data(config, tokenizer, seed=0)

    assert data.data_format == "prompt_completion"
    assert len(data.train) == 4
    first = data.train[0]
    targets = [label for label in first.labels if label != -100]
    assert tokenizer.decode(targets) == " 0</s>"


def test_explicit_format_with_missing_columns_is_an_error(prompt_completion_file, tokenizer):
    with pytest.raises(UserError, match="format 'instruction' needs field 'instruction'"):
        prepare_data(DataConfig(train=prompt_completion_file, format="instruction"), tokenizer, seed=0)


def test_truncation_is_reported_as_a_warning(tmp_path, tokenizer):
    rows = [{"prompt": "robot " * 30 + "say fox:", "completion": " fox fox"}, {"prompt": "say", "completion": " x"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)

    data = prepare_data(DataConfig(train=path, max_length=8), tokenizer, seed=0)

    assert len(data.train) == 1
    assert any(line.startswith("train.jsonl:") and "had no target tokens" in line for line in data.warnings)


def test_no_example_left_after_tokenization_is_an_error(tmp_path, tokenizer):
    rows = [{"prompt": "robot " * 30 + "say fox:", "completion": " fox fox"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)

    with pytest.raises(UserError, match="no example is left to train on"):
        prepare_data(DataConfig(train=path, max_length=8), tokenizer, seed=0)


def test_chat_file_end_to_end(tmp_path, tokenizer):
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": conversation}) + "\n", encoding="utf-8")

    data = prepare_data(DataConfig(train=path), tokenizer, seed=0)

    assert data.data_format == "chat"
    targets = [label for label in data.train[0].labels if label != -100]
    assert tokenizer.decode(targets) == "Hello</s>\n\n"
