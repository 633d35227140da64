#!/usr/bin/env bash
# Install tunelab (editable) with its test tools into the current Python environment.
# torch comes first: a CPU build where none is installed (torch==2.13.0 is the local wheel on the
# project's machines); an existing torch, CPU or CUDA, is kept as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
"$PYTHON" -m pip install --quiet -e ".[dev,quant,minilm]"
