#!/usr/bin/env bash
# Build a small Llama, fine-tune it to turn task descriptions into JSON, then ask it about a task
# it has not seen. Offline; about two minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 examples/build_tiny_model.py examples/tiny-llama
tunelab train examples/tasks-to-json.yaml --overwrite
tunelab generate runs/tasks-to-json --max-new-tokens 60 \
    --prompt "$(printf 'Extract the task as JSON.\n\nIvan owns Orion, due 2025-11-03, priority high.')"
