"""Frozen-model embeddings: extraction with a pooling, an on-disk cache, and an embedder for retrieval."""
