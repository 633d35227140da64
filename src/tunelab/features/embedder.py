"""A frozen transformer as a text embedder (``retrieval.embedder.Embedder``): for RAG and similar-shot selection.

The same extraction as the feature-based method (mean pooling of the last layer by default, which
is how sentence-transformers' MiniLM is meant to be used), loaded once on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunelab.features.cache import model_identity
from tunelab.features.embedding import Pooling

if TYPE_CHECKING:
    import numpy as np

EMBED_BATCH = 32


class TransformerEmbedder:
    def __init__(self, model: str = "minilm", pooling: Pooling = "mean", max_length: int = 256) -> None:
        self.model, self.pooling, self.max_length = model, pooling, max_length
        self.name = f"{model_identity(model)}:{pooling}:{max_length}"
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            import torch

            from tunelab.models.loading import load_backbone, load_tokenizer

            encoder = load_backbone(self.model, torch.float32, key="embedder").eval()
            self._loaded = (load_tokenizer(self.model), encoder)
        return self._loaded

    def embed(self, texts: list[str]) -> np.ndarray:
        from tunelab.features.embedding import embed_token_ids

        tokenizer, encoder = self._load()
        sequences = tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        pad_id = getattr(encoder.config, "pad_token_id", None) or 0
        vectors = embed_token_ids(encoder, sequences, pad_id, self.pooling, -1, batch_size=EMBED_BATCH)
        return vectors.numpy().astype("float32")
