"""The data stage as one call: files -> rows -> formatted text -> tokens -> (packed) items.

Returns the training and evaluation items plus what the user should be told (format detected,
examples truncated or dropped). Nothing here loads a model.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.config.schema import DataConfig, PromptConfig
from tunelab.data.blocks import cut_into_blocks
from tunelab.data.classification import (
    ClassificationExample,
    EmbeddedExample,
    encode_labelled_rows,
    label_names,
    read_labelled_rows,
)
from tunelab.data.formats import check_columns, detect_format, format_dataset, rename_columns, task_id_mapping
from tunelab.data.loading import load_rows
from tunelab.data.packing import PackedSequence, pack_examples
from tunelab.data.tokenize import TokenizedExample, tokenize_examples
from tunelab.errors import UserError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    data_format: str
    train: list[TokenizedExample] | list[PackedSequence] | list[ClassificationExample] | list[EmbeddedExample]
    eval: list[TokenizedExample] | list[PackedSequence] | list[ClassificationExample] | list[EmbeddedExample]
    train_examples: int
    warnings: list[str] = field(default_factory=list)
    task_ids: dict[str, int] = field(default_factory=dict)  # task name -> id, with a task column
    labels: list[str] = field(default_factory=list)  # classification: label names in index order
    method_seconds: float = 0.0  # time the method spent turning items into its inputs (embedding)


def _rows_with_format(path: Path, config: DataConfig) -> tuple[Dataset, str]:
    rows = rename_columns(load_rows(path, whole_documents=config.blocks), config.columns, path)
    if config.format == "auto":
        return rows, detect_format(rows.column_names, path)
    check_columns(rows.column_names, config.format, path)
    return rows, config.format


def _tokenize(
    rows: Dataset,
    data_format: str,
    path: Path,
    tokenizer: PreTrainedTokenizerBase,
    config: DataConfig,
    warnings: list[str],
    task_column: str | None = None,
    task_ids: dict[str, int] | None = None,
    prompt: PromptConfig | None = None,
) -> list[TokenizedExample]:
    formatted = format_dataset(
        rows, data_format, tokenizer, path, config.train_on_prompt, task_ids, task_column, prompt
    )
    if config.blocks:  # whole documents, cut into blocks afterwards: nothing is truncated
        documents, _ = tokenize_examples(tokenizer, formatted, max_length=sys.maxsize)
        items = cut_into_blocks(documents, config.max_length)
        if not items:
            raise UserError(f"{path}: shorter than one block of data.max_length={config.max_length} tokens")
        return items
    items, report = tokenize_examples(tokenizer, formatted, config.max_length, config.overlong)
    notes = [f"{path.name}: {line}" for line in report.warnings(config.max_length)]
    if not items:
        reason = f" ({'; '.join(report.warnings(config.max_length))})" if notes else ""
        raise UserError(f"{path}: no example is left to train on after tokenization{reason}")
    warnings.extend(notes)
    return items


def split_off(items: list, share: float, seed: int) -> tuple[list, list]:
    """A seeded random ``share`` of ``items`` held out: (kept, held_out), both in original order."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held_count = min(max(1, round(len(items) * share)), len(items) - 1)  # keep one to train on
    held = set(order[:held_count])
    kept = [item for index, item in enumerate(items) if index not in held]
    return kept, [item for index, item in enumerate(items) if index in held]


def prepare_classification_data(
    config: DataConfig, tokenizer: PreTrainedTokenizerBase, seed: int, prompt: PromptConfig | None = None
) -> PreparedData:
    """Training and evaluation examples of text and label; the label set is the training file's."""
    assert config.train is not None
    train_path = Path(config.train)
    train_rows = read_labelled_rows(train_path, config)
    labels = label_names(train_rows, train_path)
    warnings: list[str] = []
    encode = {
        "labels": labels,
        "tokenizer": tokenizer,
        "max_length": config.max_length,
        "overlong": config.overlong,
        "prompt": prompt,
    }
    train_items = encode_labelled_rows(train_rows, train_path, warnings=warnings, **encode)
    eval_items: list[ClassificationExample] = []
    if config.eval is not None:
        eval_path = Path(config.eval)
        eval_items = encode_labelled_rows(read_labelled_rows(eval_path, config), eval_path, warnings=warnings, **encode)
    elif config.eval_split is not None:
        train_items, eval_items = split_off(train_items, config.eval_split, seed)
    return PreparedData("classification", train_items, eval_items, len(train_items), warnings, labels=labels)


def prepare_data(
    config: DataConfig,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    task_column: str | None = None,
    prompt: PromptConfig | None = None,
) -> PreparedData:
    """Training and evaluation items; with ``task_column``, each carries its task id; ``prompt``
    words every question (system message, template)."""
    assert config.train is not None
    train_path = Path(config.train)
    train_rows, data_format = _rows_with_format(train_path, config)
    task_ids = task_id_mapping(train_rows, task_column, train_path) if task_column else {}
    warnings: list[str] = []
    tasks = {"task_column": task_column, "task_ids": task_ids or None, "prompt": prompt}
    train_items = _tokenize(train_rows, data_format, train_path, tokenizer, config, warnings, **tasks)
    eval_items: list[TokenizedExample] = []
    if config.eval is not None:
        eval_path = Path(config.eval)
        eval_rows, eval_format = _rows_with_format(eval_path, config)
        if eval_format != data_format:
            raise UserError(f"{eval_path}: format '{eval_format}' differs from the training data's '{data_format}'")
        eval_items = _tokenize(eval_rows, data_format, eval_path, tokenizer, config, warnings, **tasks)
    elif config.eval_split is not None:
        if len(train_items) < 2:
            raise UserError(f"{train_path}: data.eval_split needs at least 2 examples")
        train_items, eval_items = split_off(train_items, config.eval_split, seed)
    train_examples = len(train_items)
    if config.packing:
        return PreparedData(
            data_format,
            pack_examples(train_items, config.max_length),
            pack_examples(eval_items, config.max_length),
            train_examples,
            warnings,
            task_ids,
        )
    return PreparedData(data_format, train_items, eval_items, train_examples, warnings, task_ids)
