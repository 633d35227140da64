"""What retrieval needs from an embedding model: a stable name and a batch of texts -> vectors.

Only the protocol lives here; the real embedder (a frozen transformer with mean pooling) is
provided by the model side. ``name`` goes into the index cache key, so it must change whenever the
vectors would (another model, another pooling, another maximum length).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 vectors of shape ``[len(texts), dim]``, one row per text, in order."""
        ...
