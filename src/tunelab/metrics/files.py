"""Read the predictions or references of ``tunelab score`` from .jsonl, .json or .txt files.

Ours rather than ``datasets``: these files are small, a field is picked from several names, and
every problem is reported as one line naming the file, the line (or list item) and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from tunelab.data.loading import jsonl_objects, read_utf8, split_lines
from tunelab.errors import UserError

Role = Literal["predictions", "references"]

# The field a record's text is read from: the first of these the record has.
FIELDS: dict[str, tuple[str, ...]] = {
    "predictions": ("prediction", "output", "generated", "text"),
    "references": ("reference", "output", "completion", "label", "answer"),
}
SUFFIXES = (".jsonl", ".json", ".txt")


def _read_utf8(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    return read_utf8(path)


def _field_text(record: Any, role: Role, where: str) -> str:
    """The text of one record: a string itself, or the value of its first known field."""
    if isinstance(record, str):
        return record
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    names = FIELDS[role]
    name = next((name for name in names if name in record), None)
    if name is None:
        found = ", ".join(record) or "no fields"
        raise UserError(f"{where}: no '{names[0]}' field (looked for {', '.join(names)}; found: {found})")
    value = record[name]
    if value is None:
        raise UserError(f"{where}: '{name}' is null")
    # An object or list (structured output) becomes its JSON text, as the JSON metric reads it.
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _read_jsonl(path: Path, text: str, role: Role) -> list[str]:
    return [_field_text(record, role, f"{path} line {number}") for number, record in jsonl_objects(path, text)]


def _read_json(path: Path, text: str, role: Role) -> list[str]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} line {error.lineno}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(items, list):
        raise UserError(f"{path}: expected a JSON list of strings or objects, got {type(items).__name__}")
    return [_field_text(item, role, f"{path} item {index}") for index, item in enumerate(items, start=1)]


def _read_lines(text: str) -> list[str]:
    """One text per line; blank lines inside count (an empty answer), trailing ones do not."""
    lines = split_lines(text)
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_texts(path: Path | str, role: Role) -> list[str]:
    """The texts of a predictions or references file, in file order; an empty file is an error.

    .jsonl: one object per line (blank lines skipped), text from the first field of
    ``FIELDS[role]`` it has. .json: a list of strings or of such objects. .txt: one text per line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"{path}: unsupported file type '{suffix}' (use .jsonl, .json or .txt)")
    text = _read_utf8(path)
    if suffix == ".jsonl":
        texts = _read_jsonl(path, text, role)
    elif suffix == ".json":
        texts = _read_json(path, text, role)
    else:
        texts = _read_lines(text)
    if not texts:
        raise UserError(f"{path}: no {role} in the file")
    return texts
