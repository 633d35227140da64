"""One data row as a question put to the model and its answer, the same way for training and evaluation.

- instruction: the user turn is ``instruction`` (plus ``input``), or ``prompt.template``; the answer is ``output``.
- chat: every turn before the last assistant message; the answer is that message.
- prompt_completion: the raw ``prompt`` (or the template), no chat layout; the answer is ``completion``.
- classification: the user turn is ``text`` (or the template); the answer is the label. Without a
  ``prompt.system``, the system message lists the labels so an untrained model knows its choices.

``prompt.system`` replaces the row's own system message (raw prompts get it as a first paragraph,
once, before any solved examples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.config.schema import PromptConfig
from tunelab.errors import UserError
from tunelab.prompting.messages import field_text, instruction_messages, row_messages
from tunelab.prompting.template import fill_template

GENERATION_FORMATS = ("instruction", "chat", "prompt_completion", "classification")
NO_TEMPLATE_FOR_CHAT = "prompt.template applies to instruction, prompt_completion and classification data; not chat"


@dataclass(frozen=True)
class PromptedExample:
    system: str | None
    turns: tuple[dict[str, str], ...]  # chat: the conversation before the answer, ending with a user turn
    raw_prompt: str | None  # prompt_completion: the plain-text prompt (then ``turns`` is empty)
    answer: str

    def plain_prompt(self) -> str:
        """prompt_completion: the system paragraph (if any), a blank line, the prompt."""
        assert self.raw_prompt is not None
        return f"{self.system}\n\n{self.raw_prompt}" if self.system else self.raw_prompt

    @property
    def query_text(self) -> str:
        """The question itself: the last user turn, or the raw prompt."""
        return self.raw_prompt if self.raw_prompt is not None else self.turns[-1]["content"]

    def messages(self, with_answer: bool = False) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        answer = [{"role": "assistant", "content": self.answer}] if with_answer else []
        return [*system, *self.turns, *answer]


def _system(prompt: PromptConfig, own: str | None) -> str | None:
    return prompt.system if prompt.system is not None else own


def _user(prompt: PromptConfig, row: dict[str, Any], default: str) -> str:
    return fill_template(prompt.template, row) if prompt.template is not None else default


def prompted_example(
    row: dict[str, Any], data_format: str, prompt: PromptConfig, labels: list[str] | None = None
) -> PromptedExample:
    """The row as a question and its answer; a bad row raises ``UserError`` naming the field."""
    if data_format == "instruction":
        messages = instruction_messages(row)
        own_system = messages[0]["content"] if messages[0]["role"] == "system" else None
        user = next(message["content"] for message in messages if message["role"] == "user")
        turn = {"role": "user", "content": _user(prompt, row, user)}
        return PromptedExample(_system(prompt, own_system), (turn,), None, messages[-1]["content"])
    if data_format == "chat":
        if prompt.template is not None:
            raise UserError(NO_TEMPLATE_FOR_CHAT)
        messages = row_messages(row)
        last = max(index for index, message in enumerate(messages) if message["role"] == "assistant")
        own_system = messages[0]["content"] if messages[0]["role"] == "system" else None
        turns = tuple(message for message in messages[:last] if message["role"] != "system")
        if not turns or turns[-1]["role"] != "user":
            raise UserError("field 'messages': the last assistant message must follow a user message")
        return PromptedExample(_system(prompt, own_system), turns, None, messages[last]["content"])
    if data_format == "prompt_completion":
        text = _user(prompt, row, field_text(row, "prompt"))
        return PromptedExample(prompt.system, (), text, field_text(row, "completion"))
    if data_format == "classification":
        label_list = ", ".join(labels or [])
        default_system = f"Answer with one label: {label_list}." if labels else None
        turn = {"role": "user", "content": _user(prompt, row, field_text(row, "text"))}
        return PromptedExample(_system(prompt, default_system), (turn,), None, field_text(row, "label"))
    raise UserError(f"data format '{data_format}' has no answers to generate; evaluate it with --metric perplexity")
