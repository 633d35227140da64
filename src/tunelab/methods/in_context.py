"""The strategies that train nothing: ``zeroshot``, ``fewshot`` (in-context learning) and ``rag``.

They change what the model reads, not its weights: nothing, solved examples from the training
data (picked at random with the run's seed, or the most similar to each question by embedding),
or the top-k chunks of a document collection retrieved from a persistent FAISS index. Each is a
method like the trained ones: ``tunelab train`` writes a run folder without weights
(``trainable_params: 0``) and scores ``data.eval``; ``tunelab eval`` scores any data with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tunelab.cache_dirs import cache_dir
from tunelab.config.schema import MethodOptions
from tunelab.errors import UserError
from tunelab.prompting.examples import PromptedExample


@dataclass
class Augmentation:
    """What one question gets besides itself: solved examples and retrieved chunks."""

    shots: list[PromptedExample] = field(default_factory=list)
    shot_ids: list[int] = field(default_factory=list)  # indices into the training examples
    chunks: list[dict] = field(default_factory=list)  # {id, doc_id, score, text}


class InContextStrategy:
    """A strategy that trains nothing: the base model answers, its prompt augmented per question."""

    name: ClassVar[str]
    options_type: ClassVar[type[MethodOptions]] = MethodOptions
    summary: ClassVar[str] = ""
    trains: ClassVar[str] = "nothing"
    tasks: ClassVar[tuple[str, ...]] = ("causal_lm", "classification")
    needs_training_data: ClassVar[bool] = True  # False: data.eval alone will do (zero-shot, RAG)

    def recommended_train(self, task: str, options: MethodOptions | None = None) -> dict[str, Any]:
        """Nothing trains, so no train setting is the strategy's own."""
        return {}

    def augment(
        self, queries: list[PromptedExample], train: list[PromptedExample], options: MethodOptions, seed: int
    ) -> list[Augmentation]:
        """What each question gets besides itself (``train``: the solved training examples)."""
        return [Augmentation() for _ in queries]


class ZeroShotOptions(MethodOptions):
    name: Literal["zeroshot"] = "zeroshot"


class ZeroShot(InContextStrategy):
    name = "zeroshot"
    options_type = ZeroShotOptions
    summary = "the base model answers from the prompt alone (prompt.system / prompt.template)"
    needs_training_data = False


class FewShotOptions(MethodOptions):
    name: Literal["fewshot"] = "fewshot"
    shots: int = Field(3, ge=1, le=64, description="solved training examples before each question")
    select: Literal["random", "similar"] = Field("random", description="random (seeded) | similar (by embedding)")
    embedder: str = Field("minilm", description="similar: the model that embeds questions (mean pooling)")


class FewShot(InContextStrategy):
    name = "fewshot"
    options_type = FewShotOptions
    summary = "in-context learning: solved training examples in the prompt, random or most similar"

    def augment(
        self, queries: list[PromptedExample], train: list[PromptedExample], options: MethodOptions, seed: int
    ) -> list[Augmentation]:
        assert isinstance(options, FewShotOptions)
        if not train:
            raise UserError("method fewshot needs data.train to take its solved examples from")
        count = min(options.shots, len(train))
        if options.select == "random":  # one seeded draw, the same shots for every question
            chosen = random.Random(seed).sample(range(len(train)), count)
            return [Augmentation([train[i] for i in chosen], list(chosen)) for _ in queries]
        neighbours = similar_examples(queries, train, count, options.embedder)
        # most similar last, next to the question; trimming drops the least similar first
        return [Augmentation([train[i] for i in reversed(ids)], list(reversed(ids))) for ids in neighbours]


def similar_examples(
    queries: list[PromptedExample], train: list[PromptedExample], count: int, embedder_model: str
) -> list[list[int]]:
    """For each question, the indices of the ``count`` training questions nearest by cosine similarity."""
    from tunelab.features.embedder import TransformerEmbedder
    from tunelab.retrieval.documents import Chunk
    from tunelab.retrieval.index import ChunkIndex

    chunks = [Chunk(str(index), str(index), example.query_text, 0) for index, example in enumerate(train)]
    index = ChunkIndex.build(chunks, TransformerEmbedder(embedder_model))
    hits = index.search([query.query_text for query in queries], count)
    return [[int(hit.chunk.id) for hit in row] for row in hits]


class RagOptions(MethodOptions):
    name: Literal["rag"] = "rag"
    docs: Path | None = Field(None, description="a folder of .txt/.md files or a JSONL of documents")
    chunk_size: int = Field(200, gt=0, description="words per chunk")
    overlap: int = Field(20, ge=0, description="words shared by neighbouring chunks")
    top_k: int = Field(3, ge=1, description="chunks put before each question")
    embedder: str = Field("minilm", description="the model that embeds chunks and questions (mean pooling)")
    cache_dir: Path | None = Field(None, description="where indexes are kept (default: ~/.cache/tunelab/retrieval)")

    @model_validator(mode="after")
    def _docs_given(self) -> RagOptions:
        if self.docs is None:
            raise ValueError("method rag needs method.docs (a folder of .txt/.md files or a JSONL of documents)")
        if self.overlap >= self.chunk_size:
            raise ValueError("method.overlap must be smaller than method.chunk_size")
        return self


def retrieval_cache_dir(configured: Path | None) -> Path:
    """``method.cache_dir``, else ``$TUNELAB_CACHE_DIR/retrieval``, else ``~/.cache/tunelab/retrieval``."""
    return configured if configured is not None else cache_dir("retrieval")


class Rag(InContextStrategy):
    name = "rag"
    options_type = RagOptions
    summary = "retrieval-augmented generation: the top-k chunks of your documents before each question"
    trains = "nothing (documents are embedded once into a FAISS index)"
    needs_training_data = False

    def augment(
        self, queries: list[PromptedExample], train: list[PromptedExample], options: MethodOptions, seed: int
    ) -> list[Augmentation]:
        import logging

        from tunelab.features.embedder import TransformerEmbedder
        from tunelab.retrieval.index import open_index

        assert isinstance(options, RagOptions) and options.docs is not None
        embedder = TransformerEmbedder(options.embedder)
        cache = retrieval_cache_dir(options.cache_dir)
        index, reused = open_index(Path(options.docs), options.chunk_size, options.overlap, embedder, cache)
        state = "reused" if reused else "built"
        logging.getLogger("tunelab").info(f"rag: {state} the index of {len(index.chunks)} chunks in {cache}")
        results = index.search([query.query_text for query in queries], options.top_k)
        return [
            Augmentation(
                chunks=[
                    {
                        "id": hit.chunk.id,
                        "doc_id": hit.chunk.doc_id,
                        "score": round(hit.score, 4),
                        "text": hit.chunk.text,
                    }
                    for hit in row
                ]
            )
            for row in results
        ]
