"""The on-disk embedding cache: one safetensors file per (model, pooling, layer, token ids).

Extracting embeddings is the costly part of feature-based training; a second task on the same
texts (the same surveys labelled for sentiment, then for complaint / praise / feedback) should
not run the model again. No library caches pooled hidden states keyed this way, so it is ours.
The key covers the model (its folder and the size and time of its weight files, so a retrained
model in the same folder is not mistaken for the old one), the pooling, the layer and a hash of
every token id. Files are written through ``tunelab.atomic.atomic_path`` (a temporary name, then a
rename), so a crash leaves no half file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.atomic import atomic_path
from tunelab.cache_dirs import cache_dir
from tunelab.models.resolve import model_location

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tunelab.features.embedding import Pooling

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def embedding_cache_dir() -> Path:
    """``$TUNELAB_CACHE_DIR/embeddings``, else ``$XDG_CACHE_HOME/tunelab/embeddings`` (~/.cache)."""
    return cache_dir("embeddings")


def model_identity(reference: str) -> str:
    """The model's location plus the size and modification time of its weight files (local folders)."""
    location = model_location(reference)
    folder = Path(location)
    if not folder.is_dir():
        return location  # a hub id: its revision is what the hub cache holds
    stats = [
        f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}"
        for path in sorted(folder.iterdir())
        if path.suffix in WEIGHT_SUFFIXES
    ]
    return f"{folder.resolve()}|{'|'.join(stats)}"


def embedding_key(model: str, pooling: str, layer: int, sequences: Sequence[Sequence[int]]) -> str:
    digest = hashlib.sha256(json.dumps({"model": model, "pooling": pooling, "layer": layer}).encode())
    for ids in sequences:
        digest.update(b"\n" + ",".join(map(str, ids)).encode())
    return digest.hexdigest()


def load_cached_embeddings(key: str, folder: Path | None = None) -> torch.Tensor | None:
    from safetensors.torch import load_file

    path = (folder or embedding_cache_dir()) / f"{key}.safetensors"
    if not path.is_file():
        return None
    try:
        return load_file(path)["embeddings"]
    except Exception:  # a damaged file is recomputed, never trusted
        return None


def store_embeddings(key: str, embeddings: torch.Tensor, folder: Path | None = None) -> Path:
    from safetensors.torch import save_file

    path = (folder or embedding_cache_dir()) / f"{key}.safetensors"
    with atomic_path(path) as temporary:
        save_file({"embeddings": embeddings.contiguous()}, temporary)
    return path


def embeddings_for(
    encoder: nn.Module,
    reference: str,
    sequences: Sequence[Sequence[int]],
    pooling: Pooling,
    layer: int,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[torch.Tensor, bool]:
    """The sequences' embeddings, from the cache when the same model embedded the same ids; (vectors, cached)."""
    from tunelab.features.embedding import embed_token_ids

    key = embedding_key(model_identity(reference), pooling, layer, sequences)
    cached = load_cached_embeddings(key) if use_cache else None
    if cached is not None and cached.shape[0] == len(sequences):
        return cached, True
    pad_id = getattr(encoder.config, "pad_token_id", None) or 0
    vectors = embed_token_ids(encoder, sequences, pad_id, pooling, layer, progress=progress)
    if use_cache:
        store_embeddings(key, vectors)
    return vectors, False
