"""Where tunelab keeps what it can rebuild: ``$TUNELAB_CACHE_DIR/<kind>``, else
``$XDG_CACHE_HOME/tunelab/<kind>`` (``~/.cache/tunelab/<kind>``).

Kinds in use: ``embeddings`` (pooled hidden states), ``retrieval`` (document indexes), ``gguf``
(GGUF files converted to Hugging Face folders). Deleting any of them costs time, never results.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    root = os.environ.get("TUNELAB_CACHE_DIR")
    if root:
        return Path(root) / kind
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tunelab" / kind
