"""Load a document collection and cut it into overlapping word windows (chunks).

A collection is a folder (every .txt and .md file under it, recursively, hidden paths skipped) or
a .jsonl file with one document per line. Errors are ``UserError`` lines naming the file, the line
and the field. Chunking is ours: fixed windows of words with a shared overlap, never crossing a
document, each chunk keeping the document's own text (newlines included) between its first and
last word. Tokenisation, embedding and indexing belong to other modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.data.loading import jsonl_objects, read_utf8
from tunelab.errors import UserError

TEXT_SUFFIXES = (".txt", ".md")
TEXT_FIELDS = ("text", "content")
WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    source: str  # where it came from, for messages: a file path, or "docs.jsonl line 4"


@dataclass(frozen=True)
class Chunk:
    id: str  # "<doc_id>#<k>", k counting from 0 within the document
    doc_id: str
    text: str
    start_word: int  # index of the chunk's first word within its document


def load_documents(path: Path) -> list[Document]:
    """Every document of a folder of .txt/.md files, a single .txt/.md file, or a .jsonl file."""
    path = Path(path)
    if path.is_dir():
        documents = _load_folder(path)
    elif not path.is_file():
        raise UserError(f"{path}: no such file or folder")
    elif path.suffix.lower() == ".jsonl":
        documents = _load_jsonl(path)
    elif path.suffix.lower() in TEXT_SUFFIXES:
        documents = [Document(id=path.name, text=read_utf8(path), source=str(path))]
    else:
        raise UserError(f"{path}: unsupported document collection '{path.suffix}' (use a folder, .jsonl, .txt or .md)")
    documents = [document for document in documents if document.text.strip()]
    if not documents:
        raise UserError(f"{path}: no document with any text")
    return documents


def _text_files(folder: Path) -> list[Path]:
    """The .txt/.md files under ``folder``, sorted by relative path; hidden files and folders skipped."""
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in TEXT_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _load_folder(folder: Path) -> list[Document]:
    files = _text_files(folder)
    if not files:
        raise UserError(f"{folder}: no .txt or .md file in the folder")
    return [Document(id=path.relative_to(folder).as_posix(), text=read_utf8(path), source=str(path)) for path in files]


def _document_from_row(row: dict[str, Any], path: Path, number: int) -> Document:
    where = f"{path} line {number}"
    field = next((name for name in TEXT_FIELDS if name in row), None)
    if field is None:
        found = ", ".join(sorted(row)) or "no fields"
        raise UserError(f"{where}: no 'text' field (found: {found})")
    text = row[field]
    if not isinstance(text, str):
        raise UserError(f"{where}: '{field}' must be a string, got {type(text).__name__}")
    title = row.get("title")
    if title is not None:
        if not isinstance(title, str):
            raise UserError(f"{where}: 'title' must be a string, got {type(title).__name__}")
        text = f"{title}\n{text}"
    doc_id = row.get("id", f"line {number}")
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise UserError(f"{where}: 'id' must be a string or an integer, got {type(doc_id).__name__}")
    return Document(id=str(doc_id), text=text, source=where)


def _load_jsonl(path: Path) -> list[Document]:
    documents: list[Document] = []
    first_line_of: dict[str, int] = {}
    for number, row in jsonl_objects(path, read_utf8(path)):
        document = _document_from_row(row, path, number)
        if document.id in first_line_of:
            raise UserError(
                f"{path} line {number}: duplicate id '{document.id}' (first on line {first_line_of[document.id]})"
            )
        first_line_of[document.id] = number
        documents.append(document)
    if not documents:
        raise UserError(f"{path}: the file has no documents")
    return documents


def check_chunking(chunk_size: int, overlap: int) -> None:
    if chunk_size < 1:
        raise UserError(f"chunk_size must be at least 1 word (got {chunk_size})")
    if not 0 <= overlap < chunk_size:
        raise UserError(f"overlap must be at least 0 and less than chunk_size {chunk_size} (got {overlap})")


def _window_starts(word_count: int, chunk_size: int, step: int) -> Iterator[int]:
    """Start of each window; the last window is the first that reaches the end of the document."""
    start = 0
    while True:
        yield start
        if start + chunk_size >= word_count:
            return
        start += step


def chunk_document(document: Document, chunk_size: int, overlap: int) -> list[Chunk]:
    spans = [match.span() for match in WORD.finditer(document.text)]
    if not spans:
        return []
    chunks = []
    for k, start in enumerate(_window_starts(len(spans), chunk_size, chunk_size - overlap)):
        last = min(start + chunk_size, len(spans)) - 1
        text = document.text[spans[start][0] : spans[last][1]]
        chunks.append(Chunk(id=f"{document.id}#{k}", doc_id=document.id, text=text, start_word=start))
    return chunks


def chunk_documents(documents: Sequence[Document], chunk_size: int, overlap: int) -> list[Chunk]:
    """Windows of ``chunk_size`` words, neighbours sharing ``overlap`` words, in document order."""
    check_chunking(chunk_size, overlap)
    return [chunk for document in documents for chunk in chunk_document(document, chunk_size, overlap)]
