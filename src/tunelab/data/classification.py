"""Classification data: rows of ``text`` and ``label`` -> token ids and a label index.

The label set comes from the training file: names in sorted order, integers in numeric order
(kept as their text, "0", "1", ...). An evaluation label outside that set is an error that names
the file, the line or row, and the field. Columns may be renamed with ``data.columns``
(``{text: review, label: sentiment}``). Texts longer than ``data.max_length`` tokens are
truncated, or dropped with ``data.overlong=drop``; the log says how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.config.schema import DataConfig, PromptConfig
from tunelab.data.formats import rename_columns
from tunelab.data.loading import load_rows, row_location
from tunelab.errors import UserError

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

CLASSIFICATION_FIELDS = ("text", "label")


@dataclass
class ClassificationExample:
    input_ids: list[int]
    label: int  # index into the run's label list


@dataclass
class EmbeddedExample:
    """A classification example already turned into a feature vector (the ``features`` method)."""

    features: torch.Tensor
    label: int
    tokens: int  # the text's token count, so token budgets and throughput stay comparable


def read_labelled_rows(path: Path, config: DataConfig) -> Dataset:
    """The file's rows with our column names, checked to have ``text`` and ``label``."""
    rows = rename_columns(load_rows(path), config.columns, path)
    for name in CLASSIFICATION_FIELDS:
        if name not in rows.column_names:
            raise UserError(
                f"{path}: classification needs a '{name}' column, not in {sorted(rows.column_names)} "
                f"(map yours with data.columns.{name}=YOUR_COLUMN)"
            )
    return rows


def label_text(value: Any, path: Path, index: int) -> str:
    if isinstance(value, bool) or value is None or not isinstance(value, str | int | float):
        shown = "empty" if value is None else f"a {type(value).__name__}"
        raise UserError(f"{path} {row_location(path, index)}: field 'label' is {shown}; give a name or an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise UserError(
                f"{path} {row_location(path, index)}: field 'label' is {value}; labels are names or integers"
            )
        value = int(value)
    text = str(value).strip()
    if not text:
        raise UserError(f"{path} {row_location(path, index)}: field 'label' is empty")
    return text


def _text(value: Any, path: Path, index: int) -> str:
    if not isinstance(value, str) or not value.strip():
        problem = "empty" if value is None or isinstance(value, str) else f"a {type(value).__name__}, not text"
        raise UserError(f"{path} {row_location(path, index)}: field 'text' is {problem}")
    return value


def worded_text(row: dict[str, Any], prompt: PromptConfig, path: Path, index: int) -> str:
    """The text a classifier reads when ``prompt.template`` / ``prompt.system`` word it."""
    from tunelab.prompting.template import fill_template

    try:
        text = fill_template(prompt.template, row) if prompt.template is not None else row["text"]
    except UserError as error:
        raise UserError(f"{path} {row_location(path, index)}: {error}") from None
    return f"{prompt.system}\n{text}" if prompt.system else text


def classifier_text(row: dict[str, Any], prompt: PromptConfig | None, path: Path, index: int) -> str:
    """What a classifier reads for ``row``: its text, worded by ``prompt.template`` / ``prompt.system``
    where the run has them. Training, evaluation and ``tunelab predict`` all read through this one
    function, so a run is served exactly the inputs it was trained on."""
    text = _text(row.get("text"), path, index)
    if prompt is not None and (prompt.template or prompt.system):
        return worded_text(row, prompt, path, index)
    return text


def label_names(rows: Dataset, path: Path) -> list[str]:
    """The training labels in index order: integers numerically, names alphabetically."""
    names = {label_text(value, path, index) for index, value in enumerate(rows["label"])}
    if len(names) < 2:
        raise UserError(f"{path}: classification needs at least two labels, the file has {sorted(names)}")
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_labelled_rows(
    rows: Dataset,
    path: Path,
    labels: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    overlong: str,
    warnings: list[str],
    prompt: PromptConfig | None = None,
) -> list[ClassificationExample]:
    """Tokenize every text (special tokens included) and map its label to an index."""
    index_of = {label: index for index, label in enumerate(labels)}
    texts, label_ids = [], []
    for index, row in enumerate(rows):
        label = label_text(row["label"], path, index)
        if label not in index_of:
            raise UserError(
                f"{path} {row_location(path, index)}: field 'label' is '{label}', which the training data "
                f"does not have (labels: {', '.join(labels)})"
            )
        texts.append(classifier_text(row, prompt, path, index))
        label_ids.append(index_of[label])
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    examples, overlong_count = [], 0
    for text, ids, label_id in zip(texts, encoded, label_ids, strict=True):
        if len(ids) > max_length:
            overlong_count += 1
            if overlong == "drop":
                continue
            # the tokenizer truncates the text itself and keeps its closing special token ([SEP])
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        examples.append(ClassificationExample(list(ids), label_id))
    if overlong_count:
        done = "dropped" if overlong == "drop" else "truncated"
        warnings.append(
            f"{path.name}: {overlong_count} of {len(texts)} texts were longer than {max_length} tokens and were {done}"
        )
    if not examples:
        raise UserError(f"{path}: no text is left after data.overlong=drop")
    return examples
