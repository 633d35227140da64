"""The final prompt text: solved examples (shots) and retrieved context around the question.

Chat-style data goes through the tokenizer's chat template (tunelab's documented plain-text
layout where the tokenizer has none, see ``data.chat_template``): an optional system message,
then one user / assistant pair per shot, then the question. ``prompt_completion`` data stays
plain text: each shot's prompt and completion, a blank line between examples. Retrieved chunks
go in front of the question. When the prompt does not fit the model's context, shots are dropped
first (the least similar, which come first), then chunks (the lowest ranked), and the caller is
told how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.data.chat_template import render
from tunelab.data.tokenize import encode_prompt
from tunelab.prompting.examples import PromptedExample

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CONTEXT_INTRO = "Use this context if it helps:"
RAW_SEPARATOR = "\n\n"


@dataclass
class RenderedPrompt:
    text: str
    input_ids: list[int]
    shots: int  # shots kept
    chunks: int  # context chunks kept
    dropped: int  # shots and chunks dropped to fit the context


def _with_context(question: str, chunks: list[str]) -> str:
    if not chunks:
        return question
    numbered = "\n".join(f"[{index}] {chunk}" for index, chunk in enumerate(chunks, start=1))
    return f"{CONTEXT_INTRO}\n{numbered}\n\n{question}"


def prompt_text(
    tokenizer: PreTrainedTokenizerBase,
    query: PromptedExample,
    shots: list[PromptedExample],
    chunks: list[str],
    chat: bool,
) -> str:
    if not chat:
        system = [query.system] if query.system else []
        solved = [f"{shot.raw_prompt or shot.query_text}{shot.answer}" for shot in shots]
        return RAW_SEPARATOR.join([*system, *solved, _with_context(query.query_text, chunks)])
    messages = [{"role": "system", "content": query.system}] if query.system else []
    for shot in shots:
        messages += [{"role": "user", "content": shot.query_text}, {"role": "assistant", "content": shot.answer}]
    turns = list(query.turns)
    turns[-1] = {"role": "user", "content": _with_context(turns[-1]["content"], chunks)}
    return render(tokenizer, messages + turns, add_generation_prompt=True)


def fit_prompt(
    tokenizer: PreTrainedTokenizerBase,
    query: PromptedExample,
    shots: list[PromptedExample],
    chunks: list[str],
    chat: bool,
    max_tokens: int | None,
) -> RenderedPrompt:
    """The prompt with as many shots and chunks as fit in ``max_tokens`` (None: no limit)."""
    shots, chunks, dropped = list(shots), list(chunks), 0
    while True:
        text = prompt_text(tokenizer, query, shots, chunks, chat)
        ids = encode_prompt(tokenizer, text)
        if max_tokens is None or len(ids) <= max_tokens or not (shots or chunks):
            break
        if shots:
            shots.pop(0)
        else:
            chunks.pop()
        dropped += 1
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[len(ids) - max_tokens :]  # the question alone is too long: keep its end, next to the answer
        text = tokenizer.decode(ids)  # what the model sees, for --show-prompt
    return RenderedPrompt(text, ids, len(shots), len(chunks), dropped)
