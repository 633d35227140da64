"""Build the quickstart's small model: a BPE tokenizer trained on the example data and a
randomly initialised 4-layer Llama sized for it, saved to examples/tiny-llama (offline, seconds).

The quickstart then fine-tunes it with ``tunelab train examples/quickstart.yaml``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tunelab.models.tiny import save_tiny_model

HERE = Path(__file__).parent


def corpus() -> list[str]:
    texts = ["### System:\n", "### User:\n", "### Assistant:\n"]
    for line in (HERE / "data" / "tasks-to-json-train.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        texts += [row["instruction"], row["input"], row["output"]]
    return texts


def main(output: Path = HERE / "tiny-llama") -> None:
    save_tiny_model(output, "llama", corpus(), vocab_size=1024, hidden_size=128, layers=4, heads=4, max_position=512)
    print(f"tiny model written to {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "tiny-llama")
