"""tunelab.data.tokenize: the loss is on exactly the tokens the user means, and overlong examples are counted."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from conftest import make_records
from tunelab.data.chat_template import render
from tunelab.data.formats import FormattedExample, format_row
from tunelab.data.tokenize import (
    IGNORE_INDEX,
    encode_prompt,
    special_prefix_ids,
    tokenize_example,
    tokenize_examples,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
]


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(request.getfixturevalue(request.param))


def tokenize_row(tokenizer, row, data_format, train_on_prompt=False):
    example = format_row(row, data_format, tokenizer, train_on_prompt)
    return tokenize_example(tokenizer, example, special_prefix_ids(tokenizer))


def labelled_runs(labels: list[int]) -> list[list[int]]:
    """The contiguous runs of labelled tokens, in order."""
    runs, current = [], []
    for label in labels:
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + [current] if current else runs


def test_tiny_tokenizers_put_bos_before_text(tokenizer):
    assert special_prefix_ids(tokenizer) == [tokenizer.bos_token_id]


def test_prompt_completion_loss_is_on_the_completion_and_eos_only(tokenizer):
    row = {"prompt": "What is the capital of France?", "completion": " The capital of France is Paris."}

    tokenized = tokenize_row(tokenizer, row, "prompt_completion")

    labelled = [label for label in tokenized.labels if label != IGNORE_INDEX]
    assert tokenizer.decode(labelled) == row["completion"] + tokenizer.eos_token
    assert tokenizer.decode(tokenized.input_ids) == (
        tokenizer.bos_token + row["prompt"] + row["completion"] + tokenizer.eos_token
    )
    assert tokenized.labels[-1] == tokenizer.eos_token_id
    assert tokenized.input_ids[-1] == tokenizer.eos_token_id


def test_labels_are_the_input_ids_where_set(tokenizer):
    # Label i is the target for position i itself; the loss does the shift.
    tokenized = tokenize_row(tokenizer, {"prompt": "Say robot:", "completion": " robot robot"}, "prompt_completion")

    assert len(tokenized.labels) == len(tokenized.input_ids)
    for token, label in zip(tokenized.input_ids, tokenized.labels, strict=True):
        assert label in (IGNORE_INDEX, token)


def test_chat_loss_is_on_each_assistant_turn_only(tokenizer):
    tokenized = tokenize_row(tokenizer, {"messages": CONVERSATION}, "chat")

    runs = [tokenizer.decode(run) for run in labelled_runs(tokenized.labels)]
    # Each assistant answer with its EOS (and the default template's blank line after it).
    assert runs == ["Hello there</s>\n\n", "Paris</s>\n\n"]


def test_chat_train_on_prompt_puts_the_loss_on_every_token_but_the_first(tokenizer):
    tokenized = tokenize_row(tokenizer, {"messages": CONVERSATION}, "chat", train_on_prompt=True)

    assert tokenized.labels == [IGNORE_INDEX] + tokenized.input_ids[1:]


def test_prompt_completion_train_on_prompt_puts_the_loss_on_every_token_but_the_first(tokenizer):
    row = {"prompt": "Say robot:", "completion": " robot robot"}

    tokenized = tokenize_row(tokenizer, row, "prompt_completion", train_on_prompt=True)

    assert tokenized.labels == [IGNORE_INDEX] + tokenized.input_ids[1:]
    assert tokenized.labels[-1] == tokenizer.eos_token_id


def test_text_loss_is_on_every_token_and_ends_with_eos(tokenizer):
    tokenized = tokenize_row(tokenizer, {"text": "Once upon a time there was a little robot."}, "text")

    assert tokenized.input_ids[0] == tokenizer.bos_token_id
    assert tokenized.labels == [IGNORE_INDEX] + tokenized.input_ids[1:]
    assert tokenized.labels[-1] == tokenizer.eos_token_id


def test_first_label_is_ignored_even_without_a_bos_prefix(tokenizer):
    # Without BOS the first text token is a target span's first token; it still has no target,
    # because nothing precedes it (and packed and unpacked losses must agree).
    example = FormattedExample("Once upon a time", ((0, len("Once upon a time")),), append_eos=True)

    tokenized = tokenize_example(tokenizer, example, prefix_ids=[])

    assert tokenized.input_ids[0] != tokenizer.bos_token_id
    assert tokenized.labels[0] == IGNORE_INDEX
    assert tokenized.labels[1:] == tokenized.input_ids[1:]


@pytest.mark.parametrize("data_format", ["prompt_completion", "text", "chat"])
def test_bos_is_added_once(tokenizer, data_format):
    row = {
        "prompt_completion": {"prompt": "Say robot:", "completion": " robot robot"},
        "text": {"text": "Once upon a time."},
        "chat": {"messages": CONVERSATION},
    }[data_format]

    tokenized = tokenize_row(tokenizer, row, data_format)

    assert tokenized.input_ids[0] == tokenizer.bos_token_id
    assert tokenized.input_ids.count(tokenizer.bos_token_id) == 1


def test_bos_written_by_the_chat_template_is_not_doubled(tokenizer):
    tokenizer.chat_template = (
        "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n"
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )

    tokenized = tokenize_row(tokenizer, {"messages": CONVERSATION}, "chat")

    assert tokenized.input_ids[0] == tokenizer.bos_token_id
    assert tokenized.input_ids.count(tokenizer.bos_token_id) == 1


def test_encode_prompt_matches_the_prompt_tokens_seen_in_training(tokenizer):
    for record in make_records(8, seed=3):
        tokenized = tokenize_row(tokenizer, record, "prompt_completion")

        prompt_ids = encode_prompt(tokenizer, record["prompt"])

        assert tokenized.input_ids[: len(prompt_ids)] == prompt_ids
        # ... and the prompt is exactly the part without a loss.
        first_target = next(i for i, label in enumerate(tokenized.labels) if label != IGNORE_INDEX)
        assert first_target == len(prompt_ids)


def test_encode_prompt_matches_training_for_a_chat_generation_prompt(tokenizer):
    tokenized = tokenize_row(tokenizer, {"messages": CONVERSATION}, "chat")

    prompt_ids = encode_prompt(tokenizer, render(tokenizer, CONVERSATION[:-1], add_generation_prompt=True))

    assert tokenized.input_ids[: len(prompt_ids)] == prompt_ids
    assert tokenized.labels[len(prompt_ids)] != IGNORE_INDEX


def examples_of_lengths(tokenizer, word_counts: list[int]) -> list[FormattedExample]:
    rows = [{"prompt": "robot " * count + "say fox:", "completion": " fox fox"} for count in word_counts]
    return [format_row(row, "prompt_completion", tokenizer, train_on_prompt=False) for row in rows]


def test_overlong_examples_are_truncated_and_counted(tokenizer):
    examples = examples_of_lengths(tokenizer, [1, 2, 12, 14])
    lengths = [len(tokenize_example(tokenizer, e, special_prefix_ids(tokenizer)).input_ids) for e in examples]
    max_length = lengths[1] + 2  # the two short ones fit, the two long ones do not
    assert lengths[2] > max_length

    kept, report = tokenize_examples(tokenizer, examples, max_length)

    assert report.examples == 4
    assert report.truncated == 2
    assert all(len(item.input_ids) <= max_length for item in kept)
    assert [len(item.input_ids) for item in kept[:2]] == lengths[:2]
    assert any("2 of 4 examples were longer than" in line for line in report.warnings(max_length))


def test_overlong_drop_drops_and_counts(tokenizer):
    examples = examples_of_lengths(tokenizer, [1, 12, 2, 14])
    short = [tokenize_example(tokenizer, examples[i], special_prefix_ids(tokenizer)) for i in (0, 2)]
    max_length = max(len(item.input_ids) for item in short)

    kept, report = tokenize_examples(tokenizer, examples, max_length, overlong="drop")

    assert kept == short
    assert report.dropped_overlong == 2
    assert report.truncated == 0
    assert any("were dropped" in line for line in report.warnings(max_length))


def test_examples_whose_targets_are_cut_off_are_dropped_and_counted(tokenizer):
    long_prompt = {"prompt": "robot star fox dog cat " * 6 + "say fox:", "completion": " fox fox"}
    short = {"prompt": "say fox:", "completion": " fox fox"}
    examples = [format_row(row, "prompt_completion", tokenizer, False) for row in (short, long_prompt)]
    max_length = 16  # inside the long prompt: its completion is cut off entirely

    kept, report = tokenize_examples(tokenizer, examples, max_length)

    assert len(kept) == 1
    assert tokenizer.decode(kept[0].input_ids) == "<s>say fox: fox fox</s>"
    assert report.dropped_without_targets == 1
    assert any("had no target tokens within 16 tokens" in line for line in report.warnings(max_length))


def test_report_has_no_warnings_when_everything_fits(tokenizer):
    _, report = tokenize_examples(tokenizer, examples_of_lengths(tokenizer, [1, 2]), max_length=512)

    assert report.warnings(512) == []
