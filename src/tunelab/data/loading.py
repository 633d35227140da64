"""Read a data file into rows through ``datasets``, with errors that name the file and line.

``datasets`` reads JSONL/JSON/CSV/Parquet/TXT well but reports a malformed line as a pyarrow
stack trace; when it fails we scan the file ourselves to say which line is wrong.
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import UserError, first_line

if TYPE_CHECKING:
    from datasets import Dataset

LOADERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text", ".md": "text"}


def _loader_for(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise UserError(f"{path}: unsupported file type '{suffix}' (use .jsonl, .json, .csv, .parquet or .txt)")
    return LOADERS[suffix]


def find_bad_json_line(path: Path) -> str | None:
    """The first problem in a JSONL file as ``line N: ...``, or None when every line is an object."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                return f"line {number}: invalid JSON ({error.msg} at column {error.colno})"
            if not isinstance(value, dict):
                return f"line {number}: expected a JSON object, got {type(value).__name__}"
    return None


def find_bad_csv_row(path: Path) -> str | None:
    """The first CSV row whose field count differs from the header's, as ``row N (line L): ...``."""
    import csv

    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return None
        try:
            for number, row in enumerate(reader, start=1):
                if row and len(row) != len(header):
                    return (
                        f"row {number} (line {reader.line_num}): {len(row)} fields where the header "
                        f"has {len(header)} ({', '.join(header)})"
                    )
        except csv.Error as error:
            return f"line {reader.line_num}: {error}"
    return None


def _looks_like_jsonl(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def count_rows(path: Path) -> int:
    """The rows a data file holds, without tokenizing it: Parquet rows from its metadata, the
    elements of a JSON array, CSV lines after the header, non-empty lines of any other file."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as parquet

        return parquet.ParquetFile(path).metadata.num_rows
    if path.suffix.lower() == ".json" and not _looks_like_jsonl(path):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        return len(loaded) if isinstance(loaded, list) else 1
    with path.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(0, lines - (1 if path.suffix.lower() == ".csv" else 0))


def _has_content(path: Path) -> bool:
    """Whether the file holds anything but whitespace (read in chunks: data files can be large)."""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return True
    return False


def check_utf8(path: Path) -> None:
    """Text data must be UTF-8; name the first line that is not (read in chunks)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                line += chunk[: error.start].count(b"\n")
                raise UserError(f"{path} line {line}: not UTF-8 text (save the file as UTF-8)") from None
            line += chunk.count(b"\n")


def row_location(path: Path, index: int) -> str:
    """How to point a user at row ``index`` (0-based) of a file: a line number for JSONL and CSV."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json") and _looks_like_jsonl(path):
        with path.open(encoding="utf-8") as handle:
            seen = -1
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    seen += 1
                    if seen == index:
                        return f"line {number}"
    return f"row {index + 1}"  # CSV and Parquet: data rows, header excluded


def load_rows(path: Path | str, whole_documents: bool = False) -> Dataset:
    """All rows of a data file as a ``datasets.Dataset``; an empty file is an error.

    A .txt / .md file gives one row per non-empty line, or with ``whole_documents`` one row
    holding the whole file (newlines kept), as pretraining wants.
    """
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    loader = _loader_for(path)
    try:
        if not _has_content(path):
            raise UserError(f"{path}: the file is empty")
    except PermissionError:
        raise UserError(f"{path}: cannot read the file (permission denied)") from None
    if loader != "parquet":
        check_utf8(path)
    datasets_logger = logging.getLogger("datasets")
    previous_level = datasets_logger.level
    datasets_logger.setLevel(logging.CRITICAL + 1)  # its pyarrow messages would precede our one clear line
    try:
        options = {"sample_by": "document"} if loader == "text" and whole_documents else {}
        dataset = load_dataset(loader, data_files=str(path), split="train", **options)
    except Exception as error:  # datasets/pyarrow raise many types for one bad file
        if loader == "json" and _looks_like_jsonl(path):
            problem = find_bad_json_line(path)
            if problem is not None:
                raise UserError(f"{path} {problem}") from None
        if loader == "csv":
            problem = find_bad_csv_row(path)
            if problem is not None:
                raise UserError(f"{path} {problem}") from None
        first = first_line(error)
        if "corresponds to no data" in first:  # datasets' words for rows without any column
            raise UserError(f"{path}: no row has any field") from None
        raise UserError(f"{path}: cannot read as {loader}: {first}") from None
    finally:
        datasets_logger.setLevel(previous_level)
    if loader == "text":
        dataset = dataset.filter(lambda row: bool(row["text"].strip()))
    if len(dataset) == 0:
        raise UserError(f"{path}: the dataset is empty")
    return dataset


def split_lines(text: str) -> list[str]:
    """Lines as a JSONL reader sees them: only newlines end a line (str.splitlines would also split
    at U+2028 inside a JSON string)."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def jsonl_objects(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL text; a bad line is a ``UserError``
    naming ``path`` and the line."""
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number}: invalid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(value, dict):
            raise UserError(f"{path} line {number}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def read_utf8(path: Path) -> str:
    """A whole text file; one that is not UTF-8 is a ``UserError`` naming the first bad line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path} line {line}: not UTF-8 text (save the file as UTF-8)") from None


def read_text_column(path: Path | str, column: str = "text") -> list[str]:
    """The ``column`` of every row of a data file (JSONL, CSV, Parquet, or lines of a .txt)."""
    return [row["text"] for row in read_text_rows(path, column)]


def read_text_rows(path: Path | str, column: str = "text") -> list[dict[str, Any]]:
    """Every row of a data file, its ``column`` as ``text`` (other fields kept for a prompt template)."""
    path = Path(path)
    rows = load_rows(path)
    if column not in rows.column_names:
        raise UserError(f"{path}: no '{column}' column (columns: {', '.join(rows.column_names)}); use --column")
    records = []
    for index, row in enumerate(rows):
        value = row[column]
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"{path} {row_location(path, index)}: field '{column}' is empty or not text")
        records.append({**row, "text": value})
    return records
