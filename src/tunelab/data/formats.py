"""Recognise a dataset's format and turn each row into text plus the spans the loss is on.

Formats (columns after ``data.columns`` renaming):

- ``chat``: ``messages`` = ``[{"role": "system"|"user"|"assistant", "content": str}, ...]``
- ``instruction``: ``instruction``, optional ``input`` and ``system``, ``output`` (Alpaca);
  rendered as a one-turn chat.
- ``prompt_completion``: ``prompt``, ``completion``; plain concatenation, no template.
- ``text``: ``text``; the loss is on every token (language modelling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.config.schema import PromptConfig
from tunelab.data.chat_template import render_with_assistant_spans
from tunelab.data.loading import row_location
from tunelab.errors import UserError
from tunelab.prompting.messages import field_text, instruction_messages, row_messages

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

REQUIRED_FIELDS = {
    "chat": ("messages",),
    "instruction": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "text": ("text",),
}


@dataclass(frozen=True)
class FormattedExample:
    """One example as text, the character spans that are targets, and whether EOS follows."""

    text: str
    target_spans: tuple[tuple[int, int], ...]
    append_eos: bool
    task_id: int | None = None  # multi-task prompt tuning: which task the example belongs to


def rename_columns(dataset: Dataset, mapping: dict[str, str], path: Path) -> Dataset:
    """Give columns our field names: ``mapping`` is ours -> theirs, applied all at once (swaps work)."""
    for ours, theirs in mapping.items():
        if theirs not in dataset.column_names:
            raise UserError(f"{path}: data.columns.{ours} names column '{theirs}', which the file does not have")
    moving = {theirs: ours for ours, theirs in mapping.items() if ours != theirs}
    if not moving:
        return dataset
    # Two steps through temporary names, so a column can take a name another one is leaving.
    staged = {theirs: f"__tunelab_{index}" for index, theirs in enumerate(moving)}
    dataset = dataset.rename_columns(staged)
    replaced = [ours for ours in moving.values() if ours in dataset.column_names]
    if replaced:
        dataset = dataset.remove_columns(replaced)
    return dataset.rename_columns({staged[theirs]: ours for theirs, ours in moving.items()})


def detect_format(columns: list[str], path: Path) -> str:
    names = set(columns)
    for data_format in ("chat", "instruction", "prompt_completion", "text"):
        if set(REQUIRED_FIELDS[data_format]) <= names:
            return data_format
    raise UserError(
        f"{path}: cannot tell the data format from columns {sorted(names)}; expected messages, "
        "instruction+output, prompt+completion or text (rename with data.columns, e.g. "
        "data.columns.prompt=question)"
    )


def check_columns(columns: list[str], data_format: str, path: Path) -> None:
    missing = [field for field in REQUIRED_FIELDS[data_format] if field not in columns]
    if missing:
        raise UserError(f"{path}: format '{data_format}' needs field '{missing[0]}', not in columns {sorted(columns)}")


def task_id_mapping(dataset: Dataset, task_column: str, path: Path) -> dict[str, int]:
    """Task name -> id 0..N-1: numeric tasks in numeric order, named tasks in sorted order."""
    if task_column not in dataset.column_names:
        raise UserError(f"{path}: method.task_column '{task_column}' is not a column ({sorted(dataset.column_names)})")
    values = {str(value) for value in dataset[task_column] if value is not None}
    if values and all(value.isdigit() for value in values):
        return {value: index for index, value in enumerate(sorted(values, key=int))}
    return {value: index for index, value in enumerate(sorted(values))}


def _with_system(messages: list[dict[str, str]], system: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, *(message for message in messages if message["role"] != "system")]


def format_row(
    row: dict[str, Any],
    data_format: str,
    tokenizer: PreTrainedTokenizerBase,
    train_on_prompt: bool,
    prompt: PromptConfig | None = None,
) -> FormattedExample:
    """One row as a ``FormattedExample``; a bad row raises ``UserError`` naming the field.

    ``prompt`` (system message, template) words the question as evaluation will (``prompting.examples``).
    """
    from tunelab.prompting.examples import NO_TEMPLATE_FOR_CHAT, prompted_example

    if data_format in ("chat", "instruction"):
        messages = row_messages(row) if data_format == "chat" else instruction_messages(row)
        if prompt is not None and data_format == "instruction" and (prompt.template or prompt.system):
            messages = prompted_example(row, data_format, prompt).messages(with_answer=True)
        elif prompt is not None and prompt.template is not None:
            raise UserError(NO_TEMPLATE_FOR_CHAT)
        elif prompt is not None and prompt.system is not None:
            messages = _with_system(messages, prompt.system)
        text, spans = render_with_assistant_spans(tokenizer, messages)
        if train_on_prompt:
            spans = [(0, len(text))]
        return FormattedExample(text, tuple(spans), append_eos=False)
    if data_format == "prompt_completion":
        prompt_text, completion = field_text(row, "prompt"), field_text(row, "completion")
        if prompt is not None and (prompt.template or prompt.system):
            prompt_text = prompted_example(row, data_format, prompt).plain_prompt()
        start = 0 if train_on_prompt else len(prompt_text)
        end = len(prompt_text) + len(completion)
        return FormattedExample(prompt_text + completion, ((start, end),), append_eos=True)
    text = field_text(row, "text")
    return FormattedExample(text, ((0, len(text)),), append_eos=True)


def format_dataset(
    dataset: Dataset,
    data_format: str,
    tokenizer: PreTrainedTokenizerBase,
    path: Path,
    train_on_prompt: bool,
    task_ids: dict[str, int] | None = None,
    task_column: str | None = None,
    prompt: PromptConfig | None = None,
) -> list[FormattedExample]:
    """Every row formatted; with ``task_column``, each example carries its task's id from ``task_ids``."""
    formatted = []
    for index, row in enumerate(dataset):
        try:
            example = format_row(row, data_format, tokenizer, train_on_prompt, prompt)
            if task_column is not None and task_ids is not None:
                task = row.get(task_column)
                if task is None or str(task) not in task_ids:
                    known = ", ".join(task_ids)
                    raise UserError(f"field '{task_column}': task {task!r} is not one of the training tasks ({known})")
                example = dataclasses.replace(example, task_id=task_ids[str(task)])
            formatted.append(example)
        except UserError as error:
            raise UserError(f"{path} {row_location(path, index)}: {error}") from None
    return formatted
