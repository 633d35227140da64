"""tunelab.data.chat_template: a default layout where none exists; every assistant turn located and ended by EOS."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tunelab.data.chat_template import DEFAULT_CHAT_TEMPLATE, ensure_chat_template, render_with_assistant_spans
from tunelab.errors import UserError

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
]
ANSWERS = ["Hello there", "Paris"]

# A Zephyr-like template that starts with BOS and never writes EOS.
TEMPLATE_WITHOUT_EOS = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture()
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def test_default_template_is_installed_when_the_tokenizer_has_none(tokenizer):
    assert not tokenizer.chat_template

    ensure_chat_template(tokenizer)

    assert tokenizer.chat_template == DEFAULT_CHAT_TEMPLATE


def test_tokenizer_template_is_kept_when_it_has_one(tokenizer):
    tokenizer.chat_template = TEMPLATE_WITHOUT_EOS

    ensure_chat_template(tokenizer)

    assert tokenizer.chat_template == TEMPLATE_WITHOUT_EOS


def test_default_template_layout(tokenizer):
    text, _ = render_with_assistant_spans(tokenizer, CONVERSATION)

    assert text == (
        "### System:\nBe brief.\n\n"
        "### User:\nHi\n\n"
        "### Assistant:\nHello there</s>\n\n"
        "### User:\nCapital of France?\n\n"
        "### Assistant:\nParis</s>\n\n"
    )


def test_default_template_gives_one_span_per_assistant_turn_ending_with_eos(tokenizer):
    text, spans = render_with_assistant_spans(tokenizer, CONVERSATION)

    assert len(spans) == len(ANSWERS)
    for (start, end), answer in zip(spans, ANSWERS, strict=True):
        # The span is the answer, its EOS, and the template's own end-of-turn text (a blank line).
        assert text[start:end] == answer + tokenizer.eos_token + "\n\n"
    assert spans[0][1] <= spans[1][0]


def test_span_text_is_rendered_text_with_nothing_added_when_the_template_writes_eos(tokenizer):
    text, _ = render_with_assistant_spans(tokenizer, CONVERSATION)

    assert text == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)


def test_eos_is_added_to_each_span_when_the_template_omits_it(tokenizer):
    tokenizer.chat_template = TEMPLATE_WITHOUT_EOS
    assert tokenizer.eos_token not in tokenizer.apply_chat_template(CONVERSATION, tokenize=False)

    text, spans = render_with_assistant_spans(tokenizer, CONVERSATION)

    assert [text[start:end] for start, end in spans] == [answer + "\n" + tokenizer.eos_token for answer in ANSWERS]
    assert text.count(tokenizer.eos_token) == len(ANSWERS)
    # Everything else is the template's own text.
    assert text.replace(tokenizer.eos_token, "") == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)


def test_conversation_ending_with_a_user_turn_keeps_that_turn_outside_the_spans(tokenizer):
    conversation = CONVERSATION[:3] + [{"role": "user", "content": "Thanks"}]

    text, spans = render_with_assistant_spans(tokenizer, conversation)

    assert text.endswith("### User:\nThanks\n\n")
    assert len(spans) == 1
    assert spans[0][1] < text.index("Thanks")


def test_template_that_does_not_render_prefixes_as_prefixes_is_refused(tokenizer):
    # Writes the number of messages first, so a longer conversation does not extend a shorter one.
    tokenizer.chat_template = "{{ messages | length }}{% for message in messages %}{{ message['content'] }}{% endfor %}"

    with pytest.raises(UserError, match="data.format=prompt_completion"):
        render_with_assistant_spans(tokenizer, CONVERSATION)
