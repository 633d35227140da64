"""A FAISS index over document chunks, built once and cached on disk, searched for the top-k chunks.

FAISS does the vector search (an exact ``IndexFlatIP`` over L2-normalised vectors, i.e. cosine
similarity). Ours is the on-disk cache: a folder ``cache_dir/<key[:16]>/`` holding ``index.faiss``,
``chunks.jsonl`` and ``manifest.json``, keyed by a sha256 of the documents, the chunking and the
embedder's name, so a second use of the same collection makes no embedding call. A folder is
built under a temporary name and renamed into place (a whole folder, hence staged here rather than
through ``tunelab.atomic``'s file writers), and ``manifest.json`` is its last file: an interrupted build
is never trusted, and a folder whose manifest does not carry the key is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np

from tunelab.errors import UserError
from tunelab.retrieval.documents import Chunk, Document, check_chunking, chunk_documents, load_documents
from tunelab.retrieval.embedder import Embedder

log = logging.getLogger("tunelab")

EMBED_BATCH_SIZE = 64
# Part of the cache key: bump it when chunking or the folder layout changes, so old folders rebuild.
CACHE_FORMAT = 1
INDEX_FILE, CHUNKS_FILE, MANIFEST_FILE = "index.faiss", "chunks.jsonl", "manifest.json"


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # cosine similarity between the query and the chunk
    rank: int  # 1 for the best hit of a query


def embed_normalised(embedder: Embedder, texts: Sequence[str], batch_size: int = EMBED_BATCH_SIZE) -> np.ndarray:
    """Unit-length float32 vectors for ``texts``, embedded ``batch_size`` at a time."""
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start : start + batch_size])
        vectors = np.ascontiguousarray(embedder.embed(batch), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise ValueError(f"embedder {embedder.name!r} returned shape {vectors.shape} for {len(batch)} texts")
        batches.append(vectors)
    vectors = np.concatenate(batches) if batches else np.zeros((0, 0), dtype=np.float32)
    faiss.normalize_L2(vectors)  # leaves an all-zero vector as it is
    return vectors


class ChunkIndex:
    """Chunks, their vectors in a FAISS inner-product index (row i is chunk i), and the embedder."""

    def __init__(self, chunks: list[Chunk], index: faiss.Index, embedder: Embedder) -> None:
        if index.ntotal != len(chunks):
            raise ValueError(f"the index holds {index.ntotal} vectors for {len(chunks)} chunks")
        self.chunks = chunks
        self.index = index
        self.embedder = embedder

    @classmethod
    def build(cls, chunks: list[Chunk], embedder: Embedder, batch_size: int = EMBED_BATCH_SIZE) -> ChunkIndex:
        if not chunks:
            raise UserError("no chunks to index (the documents hold no words)")
        vectors = embed_normalised(embedder, [chunk.text for chunk in chunks], batch_size)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(chunks, index, embedder)

    def search(self, queries: list[str], top_k: int) -> list[list[Hit]]:
        """The ``top_k`` most similar chunks for each query, best first (all chunks when there are fewer)."""
        return self.search_vectors(self.embed_queries(queries), top_k)

    def embed_queries(self, queries: list[str]) -> np.ndarray:
        vectors = embed_normalised(self.embedder, queries)
        if queries and vectors.shape[1] != self.index.d:
            raise ValueError(f"query vectors have {vectors.shape[1]} dimensions, the index {self.index.d}")
        return vectors

    def search_vectors(self, vectors: np.ndarray, top_k: int) -> list[list[Hit]]:
        """``search`` for queries already embedded by ``embed_queries``."""
        if top_k < 1:
            raise UserError(f"top_k must be at least 1 (got {top_k})")
        if len(vectors) == 0:
            return []
        scores, rows = self.index.search(vectors, min(top_k, len(self.chunks)))
        return [self._hits(query_scores, query_rows) for query_scores, query_rows in zip(scores, rows, strict=True)]

    def _hits(self, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        found = [(score, row) for score, row in zip(scores, rows, strict=True) if row >= 0]
        return [Hit(self.chunks[row], float(score), rank) for rank, (score, row) in enumerate(found, start=1)]

    def save(self, folder: Path, manifest: dict) -> None:
        """Write the three files into an existing ``folder``; the manifest last, as the mark of a whole index."""
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        lines = (json.dumps(asdict(chunk), ensure_ascii=False) + "\n" for chunk in self.chunks)
        (folder / CHUNKS_FILE).write_text("".join(lines), encoding="utf-8")
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for name in (INDEX_FILE, CHUNKS_FILE, MANIFEST_FILE):
            with (folder / name).open("rb") as handle:
                os.fsync(handle.fileno())

    @classmethod
    def load(cls, folder: Path, embedder: Embedder) -> ChunkIndex:
        """A saved index; ``embedder`` must be the one it was built with (its name is checked)."""
        manifest = read_manifest(folder)
        if manifest is None:
            raise UserError(f"{folder}: not a complete index (no readable {MANIFEST_FILE})")
        if manifest.get("embedder") != embedder.name:
            raise UserError(f"{folder}: built with embedder {manifest.get('embedder')!r}, not {embedder.name!r}")
        with (folder / CHUNKS_FILE).open(encoding="utf-8") as handle:
            chunks = [Chunk(**json.loads(line)) for line in handle if line.strip()]
        return cls(chunks, faiss.read_index(str(folder / INDEX_FILE)), embedder)


def cache_key(documents: Sequence[Document], chunk_size: int, overlap: int, embedder_name: str) -> str:
    """sha256 of everything the index depends on: document ids and texts, chunking, embedder name."""
    digest = hashlib.sha256()
    settings = {"format": CACHE_FORMAT, "chunk_size": chunk_size, "overlap": overlap, "embedder": embedder_name}
    digest.update(json.dumps(settings, sort_keys=True).encode("utf-8"))
    for document in documents:
        # one JSON array per document: unambiguous however ids and texts are split
        digest.update(b"\n" + json.dumps([document.id, document.text]).encode("utf-8"))
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _load_cached(folder: Path, key: str, embedder: Embedder) -> ChunkIndex | None:
    """The index in ``folder`` when its manifest carries ``key`` and its files read back whole, else None."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("key") != key:
        return None
    try:
        index = ChunkIndex.load(folder, embedder)
    except Exception as error:  # a damaged file: faiss, json and our own checks raise different types
        log.warning("rebuilding the retrieval index in %s: %s", folder, error)
        return None
    if len(index.chunks) != manifest.get("chunks"):
        return None
    return index


def _manifest(key: str, docs: Path, documents: int, chunk_size: int, overlap: int, index: ChunkIndex) -> dict:
    return {
        "key": key,
        "docs": str(Path(docs).resolve()),
        "documents": documents,
        "chunks": len(index.chunks),
        "chunk_size": chunk_size,
        "overlap": overlap,
        "dim": index.index.d,
        "embedder": index.embedder.name,
        "format": CACHE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _publish(staging: Path, folder: Path) -> None:
    """Rename the finished ``staging`` folder to ``folder``, retiring a stale ``folder`` first."""
    if folder.exists():
        retired = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
        os.replace(folder, retired)  # POSIX rename replaces the empty folder mkdtemp made
        shutil.rmtree(retired, ignore_errors=True)
    try:
        os.rename(staging, folder)
    except OSError:
        # another process published the same key first; its index is the same as ours
        shutil.rmtree(staging, ignore_errors=True)


def _save_atomically(index: ChunkIndex, folder: Path, manifest: dict) -> None:
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
    try:
        index.save(staging, manifest)
        _publish(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def open_index(
    docs: Path, chunk_size: int, overlap: int, embedder: Embedder, cache_dir: Path
) -> tuple[ChunkIndex, bool]:
    """The index of ``docs`` from ``cache_dir`` when one was built with the same settings, else a new one.

    Returns the index and whether it was reused (a reused index costs no embedding call).
    """
    check_chunking(chunk_size, overlap)
    documents = load_documents(docs)
    key = cache_key(documents, chunk_size, overlap, embedder.name)
    folder = Path(cache_dir) / key[:16]
    cached = _load_cached(folder, key, embedder)
    if cached is not None:
        log.info("reusing the retrieval index in %s (%d chunks)", folder, len(cached.chunks))
        return cached, True
    chunks = chunk_documents(documents, chunk_size, overlap)
    log.info("embedding %d chunks of %d documents with %s", len(chunks), len(documents), embedder.name)
    index = ChunkIndex.build(chunks, embedder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _save_atomically(index, folder, _manifest(key, docs, len(documents), chunk_size, overlap, index))
    return index, False
