"""tunelab.evaluation.prompts: shots and retrieved chunks around the question, and trimming to the context."""

from __future__ import annotations

import pytest

from tunelab.config.schema import PromptConfig
from tunelab.data.chat_template import ensure_chat_template
from tunelab.data.tokenize import encode_prompt
from tunelab.evaluation.prompts import fit_prompt, prompt_text
from tunelab.models.loading import load_tokenizer
from tunelab.prompting.examples import prompted_example

WORDS = ["robot", "star", "fox"]
CHUNKS = ["Paris is the capital of France.", "Spiders have eight legs."]


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    tokenizer = load_tokenizer(str(tiny_llama))
    ensure_chat_template(tokenizer)  # the tiny tokenizer has none: tunelab's ### layout
    return tokenizer


def instruction(word: str, system: str | None = None):
    row = {"instruction": f"say {word}", "output": word.upper()}
    return prompted_example(row, "instruction", PromptConfig(system=system))


def raw(word: str):
    return prompted_example({"prompt": f"say {word}:", "completion": f" {word}"}, "prompt_completion", PromptConfig())


SHOTS = [instruction(word) for word in WORDS]  # least similar first, as fewshot orders them
QUERY = instruction("dog", system="Be brief.")


def test_chat_prompt_has_system_then_each_shot_in_order_then_the_question(tokenizer):
    rendered = fit_prompt(tokenizer, QUERY, SHOTS, [], chat=True, max_tokens=None)
    text = rendered.text

    assert (rendered.shots, rendered.chunks, rendered.dropped) == (3, 0, 0)
    assert text.startswith("### System:\nBe brief.")
    assert text.count("### User:") == 4 and text.count("### Assistant:") == 4
    positions = [text.index(f"say {word}\n") for word in WORDS] + [text.index("say dog")]
    assert positions == sorted(positions)
    answers = [text.index(word.upper()) for word in WORDS]
    assert answers == sorted(answers) and answers[-1] < text.index("say dog")
    assert text.endswith("say dog\n\n### Assistant:\n")  # the model answers next
    assert rendered.input_ids == encode_prompt(tokenizer, text)


def test_chat_prompt_uses_the_tokenizers_own_template(tiny_llama):
    tokenizer = load_tokenizer(str(tiny_llama))
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )

    text = prompt_text(tokenizer, QUERY, SHOTS[-1:], [], chat=True)

    assert text == (
        "<system>Be brief.</system><user>say fox</user><assistant>FOX</assistant><user>say dog</user><assistant>"
    )


def test_retrieved_chunks_come_numbered_before_the_question(tokenizer):
    text = fit_prompt(tokenizer, QUERY, [], CHUNKS, chat=True, max_tokens=None).text

    assert "[1] Paris is the capital of France.\n[2] Spiders have eight legs.\n\nsay dog" in text
    assert text.count("### User:") == 1


def test_prompt_completion_is_plain_text_with_blank_lines_between_examples(tokenizer):
    shots = [raw("robot"), raw("star")]

    rendered = fit_prompt(tokenizer, raw("dog"), shots, [], chat=False, max_tokens=None)

    assert rendered.text == "say robot: robot\n\nsay star: star\n\nsay dog:"
    assert "###" not in rendered.text
    assert rendered.input_ids == encode_prompt(tokenizer, rendered.text)


def test_trimming_keeps_the_last_shot_which_is_the_most_similar(tokenizer):
    one_shot = fit_prompt(tokenizer, QUERY, SHOTS[-1:], [], chat=True, max_tokens=None)

    rendered = fit_prompt(tokenizer, QUERY, SHOTS, [], chat=True, max_tokens=len(one_shot.input_ids))

    assert (rendered.shots, rendered.dropped) == (1, 2)
    assert rendered.text == one_shot.text
    assert "FOX" in rendered.text and "ROBOT" not in rendered.text and "STAR" not in rendered.text
    assert len(rendered.input_ids) <= len(one_shot.input_ids)


def test_chunks_are_dropped_after_every_shot_lowest_ranked_first(tokenizer):
    best_chunk_only = fit_prompt(tokenizer, QUERY, [], CHUNKS[:1], chat=True, max_tokens=None)
    budget = len(best_chunk_only.input_ids)

    rendered = fit_prompt(tokenizer, QUERY, SHOTS, CHUNKS, chat=True, max_tokens=budget)

    assert (rendered.shots, rendered.chunks, rendered.dropped) == (0, 1, 4)
    assert "Paris" in rendered.text and "Spiders" not in rendered.text
    assert len(rendered.input_ids) <= budget


def test_a_question_longer_than_the_budget_keeps_its_end(tokenizer):
    full = fit_prompt(tokenizer, QUERY, [], [], chat=True, max_tokens=None)
    budget = len(full.input_ids) // 2

    rendered = fit_prompt(tokenizer, QUERY, SHOTS, CHUNKS, chat=True, max_tokens=budget)

    assert (rendered.shots, rendered.chunks, rendered.dropped) == (0, 0, 5)
    assert rendered.input_ids == full.input_ids[-budget:]  # the end, next to where the answer goes


def test_no_limit_drops_nothing(tokenizer):
    rendered = fit_prompt(tokenizer, QUERY, SHOTS, CHUNKS, chat=True, max_tokens=None)

    assert (rendered.shots, rendered.chunks, rendered.dropped) == (3, 2, 0)


def test_a_plain_prompt_carries_the_system_paragraph_once(tokenizer):
    prompt = PromptConfig(system="Repeat the word twice.")
    rows = [{"prompt": f"say {word}:", "completion": f" {word} {word}"} for word in ("cat", "dog")]
    shots = [prompted_example(row, "prompt_completion", prompt) for row in rows]
    query = prompted_example({"prompt": "say fox:", "completion": " fox fox"}, "prompt_completion", prompt)

    text = prompt_text(tokenizer, query, shots, [], chat=False)

    assert text == "Repeat the word twice.\n\nsay cat: cat cat\n\nsay dog: dog dog\n\nsay fox:"


@pytest.mark.parametrize(
    ("data_format", "row", "chat"),
    [
        ("instruction", {"instruction": "Name the city.", "input": "France", "output": "Paris"}, True),
        ("prompt_completion", {"prompt": "Capital of France:", "completion": " Paris"}, False),
    ],
)
def test_training_and_evaluation_word_a_templated_prompt_the_same(tokenizer, data_format, row, chat):
    """What a generative run trains on before its answer is exactly what evaluation asks it."""
    from tunelab.data.formats import format_row

    field = "instruction" if data_format == "instruction" else "prompt"
    wording = PromptConfig(system="Answer in one word.", template=f"Q: {{{field}}}")
    trained = format_row(row, data_format, tokenizer, train_on_prompt=False, prompt=wording)
    asked = prompt_text(tokenizer, prompted_example(row, data_format, wording), [], [], chat=chat)
    answer_starts = trained.target_spans[0][0]
    assert trained.text[:answer_starts] == asked
    assert "Q: " in asked and "Answer in one word." in asked
