"""A model folder's config and tokenizer with random weights: the same shapes, tokens and batches,
so the same work per training step, for a machine the weights cannot reach.

The GPU figures in bench/README.md come from such a copy of SmolLM2-135M-Instruct: the machine lent
for them receives at most 64 MiB, and the GGUF alone is 98 MB. transformers builds the model from
its config (``from_config``, seed 0) and saves it; the folder's other files (tokenizer, chat
template, generation config) are copied as they are. Throughput and memory match the real model's;
losses start near ln(vocabulary size) instead.

    python bench/random_weights.py SOURCE_FOLDER OUTPUT_FOLDER   # only config.json + tokenizer needed
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def save_random_copy(source: Path, output: Path, seed: int = 0) -> None:
    """Write ``output``: ``source``'s config with seeded random fp32 weights, plus its other files."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if output.exists():
        raise SystemExit(f"{output} exists; choose a new folder")
    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    try:
        model.save_pretrained(staging)
        for file in source.iterdir():
            if file.is_file() and file.name != "config.json" and not file.name.endswith(WEIGHT_SUFFIXES):
                shutil.copy2(file, staging / file.name)
        staging.rename(output)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone after the rename; a failed write leaves nothing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a model folder (config.json and the tokenizer's files)")
    parser.add_argument("output", type=Path, help="the new folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    save_random_copy(args.source, args.output, args.seed)
    print(f"random-weight copy of {args.source} written to {args.output}")


if __name__ == "__main__":
    main()
