"""tunelab.prompting.examples: each data format as the question put to the model and its answer."""

from __future__ import annotations

import pytest

from tunelab.config.schema import PromptConfig
from tunelab.errors import UserError
from tunelab.prompting.examples import prompted_example

NO_PROMPT = PromptConfig()
LABELS = ["negative", "neutral", "positive"]


def test_instruction_joins_instruction_and_input_and_answers_output():
    row = {"instruction": "Convert to JSON", "input": "finish the report by Friday", "output": '{"day": "Friday"}'}

    example = prompted_example(row, "instruction", NO_PROMPT)

    assert example.turns == ({"role": "user", "content": "Convert to JSON\n\nfinish the report by Friday"},)
    assert example.answer == '{"day": "Friday"}'
    assert example.system is None and example.raw_prompt is None
    assert example.query_text == "Convert to JSON\n\nfinish the report by Friday"
    assert example.messages(with_answer=True)[-1] == {"role": "assistant", "content": '{"day": "Friday"}'}


def test_instruction_keeps_its_own_system_unless_prompt_system_replaces_it():
    row = {"instruction": "Say hi", "output": "hi", "system": "You are terse."}

    assert prompted_example(row, "instruction", NO_PROMPT).system == "You are terse."
    replaced = prompted_example(row, "instruction", PromptConfig(system="You are polite."))
    assert replaced.system == "You are polite."
    assert [m["role"] for m in replaced.messages()] == ["system", "user"]


def test_instruction_template_words_the_user_turn():
    row = {"instruction": "Convert to JSON", "input": "finish the report", "output": "{}"}

    example = prompted_example(row, "instruction", PromptConfig(template="Task: {instruction}\nText: {input}"))

    assert example.query_text == "Task: Convert to JSON\nText: finish the report"
    assert example.answer == "{}"


def test_chat_keeps_the_history_before_the_last_answer():
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
        ]
    }

    example = prompted_example(row, "chat", NO_PROMPT)

    assert example.system == "Be brief."
    assert example.turns == (
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    )
    assert example.answer == "Rome."
    assert example.query_text == "And of Italy?"
    overridden = prompted_example(row, "chat", PromptConfig(system="Answer in French."))
    assert overridden.system == "Answer in French."
    assert [m["content"] for m in overridden.messages() if m["role"] == "system"] == ["Answer in French."]


def test_chat_refuses_a_template():
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}

    with pytest.raises(UserError, match="not chat"):
        prompted_example(row, "chat", PromptConfig(template="{messages}"))


def test_chat_answer_must_follow_a_user_turn():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hello"}]}

    with pytest.raises(UserError, match="has no user message"):
        prompted_example(row, "chat", NO_PROMPT)


def test_prompt_completion_is_plain_text_with_the_system_as_first_paragraph():
    row = {"prompt": "say fox:", "completion": " fox fox"}

    plain = prompted_example(row, "prompt_completion", NO_PROMPT)
    with_system = prompted_example(row, "prompt_completion", PromptConfig(system="Repeat the word twice."))

    assert (plain.raw_prompt, plain.turns, plain.system, plain.answer) == ("say fox:", (), None, " fox fox")
    # the system text is a first paragraph of the plain prompt, kept apart so that few-shot
    # prompts carry it once, not once per solved example
    assert with_system.raw_prompt == "say fox:" and with_system.system == "Repeat the word twice."
    assert with_system.plain_prompt() == "Repeat the word twice.\n\nsay fox:"


def test_prompt_completion_template_wraps_the_fields():
    row = {"prompt": "say fox:", "completion": " fox", "topic": "animals"}

    example = prompted_example(row, "prompt_completion", PromptConfig(template="[{topic}] {prompt}"))

    assert example.raw_prompt == "[animals] say fox:"


def test_classification_system_lists_the_labels_by_default():
    row = {"text": "I love it", "label": "positive"}

    example = prompted_example(row, "classification", NO_PROMPT, LABELS)

    assert example.system is not None
    assert all(label in example.system for label in LABELS)
    assert example.query_text == "I love it"
    assert example.answer == "positive"


def test_classification_prompt_system_and_template_replace_the_defaults():
    row = {"text": "I love it", "label": "positive"}
    prompt = PromptConfig(system="Sentiment?", template="Review: {text}")

    example = prompted_example(row, "classification", prompt, LABELS)

    assert example.system == "Sentiment?"
    assert example.query_text == "Review: I love it"


def test_classification_without_labels_has_no_system():
    assert prompted_example({"text": "x", "label": "a"}, "classification", NO_PROMPT).system is None


def test_missing_field_is_named():
    with pytest.raises(UserError, match="missing field 'output'"):
        prompted_example({"instruction": "Say hi"}, "instruction", NO_PROMPT)


def test_text_data_has_no_answer_and_points_to_perplexity():
    with pytest.raises(UserError, match="--metric perplexity"):
        prompted_example({"text": "Once upon a time"}, "text", NO_PROMPT)
