"""Tokenize formatted examples into ``input_ids`` and ``labels`` (-100 where there is no loss).

The whole text is tokenized at once and the loss mask comes from character offsets, so the
tokens match what the model sees at inference (tokenizing segments separately would change
tokens at the boundaries). Label ``i`` is the target for position ``i`` itself; the loss shifts.
The first token of every example never has a target, which keeps packed and unpacked losses equal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunelab.data.formats import FormattedExample
from tunelab.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
log = logging.getLogger(__name__)


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    task_id: int | None = None

    @property
    def target_count(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass
class TokenizeReport:
    examples: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    dropped_without_targets: int = 0
    notes: list[str] = field(default_factory=list)

    def warnings(self, max_length: int) -> list[str]:
        lines = []
        if self.truncated:
            lines.append(
                f"{self.truncated} of {self.examples} examples were longer than {max_length} tokens "
                "and were truncated (data.overlong=drop drops them instead)"
            )
        if self.dropped_overlong:
            lines.append(
                f"{self.dropped_overlong} of {self.examples} examples were longer than {max_length} "
                "tokens and were dropped"
            )
        if self.dropped_without_targets:
            lines.append(
                f"{self.dropped_without_targets} of {self.examples} examples had no target tokens "
                f"within {max_length} tokens and were dropped"
            )
        return lines


def special_prefix_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids the tokenizer puts before text by default (usually BOS; nothing for GPT-2)."""
    with_specials = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    for start in range(len(with_specials) - len(bare) + 1):
        if with_specials[start : start + len(bare)] == bare:
            return list(with_specials[:start])
    return []


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a prompt exactly as training tokenized the same text."""
    prefix = special_prefix_ids(tokenizer)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts_with_prefix = bool(prefix) and ids[: len(prefix)] == prefix
    return list(ids) if starts_with_prefix else prefix + list(ids)


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, example: FormattedExample, prefix_ids: list[int]
) -> TokenizedExample:
    if not tokenizer.is_fast:
        raise UserError("tunelab needs a fast (Rust) tokenizer to locate the target tokens")
    encoded = tokenizer(example.text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    # A token that overlaps a target span is a target: with a prompt ending in a space, the token
    # " 2" starts in the prompt but carries the answer.
    is_target = [
        any(begin < end and finish > start for start, end in example.target_spans)
        for begin, finish in encoded["offset_mapping"]
    ]
    if prefix_ids and ids[: len(prefix_ids)] != prefix_ids:
        ids = prefix_ids + ids
        is_target = [False] * len(prefix_ids) + is_target
    if example.append_eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        is_target.append(True)
    labels = [token if target else IGNORE_INDEX for token, target in zip(ids, is_target, strict=True)]
    if labels:
        labels[0] = IGNORE_INDEX
    return TokenizedExample(ids, labels, example.task_id)


def tokenize_examples(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[FormattedExample],
    max_length: int,
    overlong: str = "truncate",
) -> tuple[list[TokenizedExample], TokenizeReport]:
    """Tokenize, then truncate or drop what exceeds ``max_length``; the report counts both."""
    prefix = special_prefix_ids(tokenizer)
    report = TokenizeReport(examples=len(examples))
    kept = []
    for example in examples:
        tokenized = tokenize_example(tokenizer, example, prefix)
        if len(tokenized.input_ids) > max_length:
            if overlong == "drop":
                report.dropped_overlong += 1
                continue
            report.truncated += 1
            tokenized = TokenizedExample(
                tokenized.input_ids[:max_length], tokenized.labels[:max_length], tokenized.task_id
            )
        if tokenized.target_count == 0:
            report.dropped_without_targets += 1
            continue
        kept.append(tokenized)
    return kept, report
