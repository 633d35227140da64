"""Render chat messages to text, and find the character spans of the assistant turns.

The tokenizer's own chat template is used where it has one. Otherwise tunelab installs this
documented plain-text layout on the tokenizer (and saves it with the artifact, so generation
sees exactly what training saw)::

    ### System:
    {system}

    ### User:
    {user}

    ### Assistant:
    {assistant}</s>

Every assistant turn ends with the tokenizer's EOS token so that generation stops.
Spans are found by rendering growing prefixes of the conversation, which works for any template
that renders a conversation's prefix as a prefix of its text (all common ones do).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}### System:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}### User:\n{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'assistant' %}### Assistant:\n{{ message['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give a tokenizer without a chat template the default layout above."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def render(tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def render_with_assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict]
) -> tuple[str, list[tuple[int, int]]]:
    """The conversation's text and the ``(start, end)`` character span of every assistant turn.

    A span covers the assistant's content and the template's end-of-turn text; the EOS token is
    added to the span where the template does not write one.
    """
    ensure_chat_template(tokenizer)
    eos = tokenizer.eos_token or ""
    text = ""  # what we train on: the template's text, plus EOS where the template omits it
    rendered = ""  # the template's own text up to the last assistant turn handled
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:index], add_generation_prompt=True)
        full = render(tokenizer, messages[: index + 1], add_generation_prompt=False)
        if not prompt.startswith(rendered) or not full.startswith(prompt):
            raise UserError(
                "the tokenizer's chat template does not render a conversation's prefix as a prefix of its "
                "text, so assistant turns cannot be located; use data.format=prompt_completion"
            )
        text += prompt[len(rendered) :]
        answer = full[len(prompt) :]
        if eos and eos not in answer:
            answer += eos
        spans.append((len(text), len(text) + len(answer)))
        text += answer
        rendered = full
    whole = render(tokenizer, messages, add_generation_prompt=False)
    if whole.startswith(rendered):
        text += whole[len(rendered) :]
    return text, spans
