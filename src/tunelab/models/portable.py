"""Saved models and tokenizers that the transformers 4 line still in wide use reads correctly.

transformers 5 writes two things transformers 4.57 misreads, one loudly and one silently:

- ``tokenizer_config.json`` names ``TokenizersBackend``, a class transformers 4 does not have
  (``AutoTokenizer`` fails); ``PreTrainedTokenizerFast`` is the same fast tokenizer under the name
  both lines know, and transformers 5 loads it as before;
- ``config.json`` keeps the RoPE base and scaling only in ``rope_parameters``; transformers 4 reads
  ``rope_theta`` and ``rope_scaling`` at the top level and, finding neither, silently uses its
  default base (SmolLM2's 100,000 read back as 10,000: a different model, no error).

``make_portable`` adds what transformers 4 looks for beside what transformers 5 wrote; transformers 5
reads the result exactly as before. No maintained library does this translation (transformers writes
only its own format), which is why it is ours. A file that changes is replaced by a rename
(``tunelab.atomic``), never rewritten in place, and one already portable is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.atomic import write_json_atomic

# tokenizer classes only transformers 5 knows -> the name both lines load as the same tokenizer
PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def portable_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the top-level RoPE fields transformers 4 reads, taken from ``rope_parameters``."""
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        return config  # per-layer-type RoPE (Gemma 3's) or none: nothing transformers 4 reads this way
    portable = {**config, "rope_theta": rope["rope_theta"]}
    if rope.get("rope_type", "default") != "default":
        portable["rope_scaling"] = {key: value for key, value in rope.items() if key != "rope_theta"}
    return portable


def portable_tokenizer_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` naming a tokenizer class transformers 4 has."""
    name = config.get("tokenizer_class")
    if name in PORTABLE_TOKENIZER_CLASSES:
        return {**config, "tokenizer_class": PORTABLE_TOKENIZER_CLASSES[name]}
    return config


def _rewrite(path: Path, translate) -> None:
    if not path.is_file():
        return
    original = json.loads(path.read_text(encoding="utf-8"))
    translated = translate(original)
    if translated != original:
        write_json_atomic(path, translated)


def make_portable(folder: Path | str) -> None:
    """Rewrite the model and tokenizer configs saved in ``folder`` (those present) for transformers 4."""
    folder = Path(folder)
    _rewrite(folder / "config.json", portable_model_config)
    _rewrite(folder / "tokenizer_config.json", portable_tokenizer_config)
