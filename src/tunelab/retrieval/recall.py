"""Recall@k: how often retrieval finds a document known to hold the answer.

Counted on document ids, not chunks: several chunks of one document among the hits count as one
retrieved document. Retrieval itself is ``index.ChunkIndex``; answer quality is evaluated elsewhere.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tunelab.retrieval.index import ChunkIndex


def _as_set(relevant: str | Collection[str]) -> set[str]:
    return {relevant} if isinstance(relevant, str) else set(relevant)


def unique_in_order(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def recall_at_k(retrieved: Sequence[Sequence[str]], relevant: Sequence[str | Collection[str]], k: int) -> float:
    """Share of queries with a relevant document id among their first ``k`` distinct retrieved document ids."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    if len(retrieved) != len(relevant):
        raise ValueError(f"{len(retrieved)} retrieved lists for {len(relevant)} queries' relevant documents")
    if not retrieved:
        raise ValueError("recall needs at least one query")
    found = sum(
        bool(set(unique_in_order(ids)[:k]) & _as_set(wanted)) for ids, wanted in zip(retrieved, relevant, strict=True)
    )
    return found / len(retrieved)


def top_document_ids(index: ChunkIndex, queries: list[str], k: int) -> list[list[str]]:
    """Up to ``k`` distinct document ids per query, best first: asks for more chunks until each query has k."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    vectors = index.embed_queries(queries)
    top_k = k
    while True:
        hits = index.search_vectors(vectors, top_k)
        doc_ids = [unique_in_order([hit.chunk.doc_id for hit in query_hits]) for query_hits in hits]
        if top_k >= len(index.chunks) or all(len(ids) >= k for ids in doc_ids):
            return [ids[:k] for ids in doc_ids]
        top_k = min(2 * top_k, len(index.chunks))


def retrieval_recall(
    index: ChunkIndex, queries: list[str], relevant_doc_ids: Sequence[str | Collection[str]], k: int
) -> float:
    """Recall@k of ``index`` on ``queries`` whose answer-bearing documents are ``relevant_doc_ids``."""
    return recall_at_k(top_document_ids(index, queries, k), relevant_doc_ids, k)
