"""tunelab.retrieval.recall: recall@k counts documents, not chunks, worked out by hand."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from tunelab.retrieval.documents import Document, chunk_documents
from tunelab.retrieval.index import ChunkIndex
from tunelab.retrieval.recall import recall_at_k, retrieval_recall, top_document_ids


class HashedWords:
    """Bag of words hashed into 256 dimensions (crc32: stable across processes)."""

    name = "hashed-words-256"

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % 256] += 1.0
        return vectors


RETRIEVED = [
    ["a", "b", "c"],  # relevant "a" at rank 1
    ["b", "a", "c"],  # relevant "a" at rank 2
    ["c", "b", "a"],  # relevant "a" at rank 3
    ["b", "c", "d"],  # relevant "a" never
]


def test_recall_at_1_and_3_by_hand():
    relevant = ["a", "a", "a", "a"]

    assert recall_at_k(RETRIEVED, relevant, k=1) == 0.25
    assert recall_at_k(RETRIEVED, relevant, k=2) == 0.5
    assert recall_at_k(RETRIEVED, relevant, k=3) == 0.75


def test_any_of_several_relevant_documents_counts():
    relevant = [{"x", "a"}, ["c", "b"], "z", ("d",)]

    assert recall_at_k(RETRIEVED, relevant, k=1) == 0.5  # queries 1 and 2
    assert recall_at_k(RETRIEVED, relevant, k=3) == 0.75  # and query 4; query 3 wants "z"


def test_chunks_of_one_document_count_once():
    # three chunks of "b" before "a": with chunk ids recall@2 would miss "a"; with document ids it finds it
    retrieved = [["b", "b", "b", "a"]]

    assert recall_at_k(retrieved, ["a"], k=2) == 1.0
    assert recall_at_k(retrieved, ["a"], k=1) == 0.0


@pytest.mark.parametrize(("retrieved", "relevant", "k"), [([["a"]], ["a"], 0), ([["a"]], ["a", "b"], 1), ([], [], 1)])
def test_bad_arguments_are_rejected(retrieved, relevant, k):
    with pytest.raises(ValueError):
        recall_at_k(retrieved, relevant, k)


@pytest.fixture()
def index() -> ChunkIndex:
    documents = [
        # a long document on France, cut into three chunks that all mention France
        Document("france", "France France capital Paris. France France river Seine. France France wine cheese.", "-"),
        Document("plants", "Plants turn sunlight into sugar by photosynthesis.", "-"),
        Document("volcano", "Volcanoes erupt molten rock and ash.", "-"),
    ]
    return ChunkIndex.build(chunk_documents(documents, chunk_size=4, overlap=0), HashedWords())


def test_top_document_ids_looks_past_repeated_chunks(index):
    assert len([chunk for chunk in index.chunks if chunk.doc_id == "france"]) == 3

    [ids] = top_document_ids(index, ["France photosynthesis"], k=2)

    assert ids == ["france", "plants"]


def test_retrieval_recall_on_a_tiny_index(index):
    queries = ["capital of France", "photosynthesis in plants", "molten rock", "France photosynthesis"]
    relevant = ["france", "plants", "volcano", "plants"]

    assert retrieval_recall(index, queries, relevant, k=1) == 0.75  # the last query finds France first
    assert retrieval_recall(index, queries, relevant, k=2) == 1.0
