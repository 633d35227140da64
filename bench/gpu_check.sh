#!/usr/bin/env bash
# The GPU checks of bench/README.md in one command (about 5 minutes on an H200):
#   1. `tunelab train` LoRA smoke runs in fp16 and in the default precision (auto: bf16 on the GPU),
#      each run's summary.json figures (tokens/s, padding share, MFU against the measured peak);
#   2. bench/vs_trl.py, LoRA: TRL and tunelab, padded and packed;
#   3. tunelab doctor;
#   4. bench/vs_trl.py, full fine-tuning.
# Each part has its own time limit, so one that fails or hangs leaves the others their figures.
#
#   bench/gpu_check.sh MODEL_FOLDER [OUTPUT_FOLDER]    # OUTPUT_FOLDER: a new temporary one by default
#
# Reads the Alpaca demo from ../shared/data beside the project.
#
# Needs tunelab's dependencies and trl (pip install -c constraints.txt trl==1.16.0); a machine that
# cannot download takes them as wheels: transformers, peft, trl, datasets (and dill, multiprocess),
# pydantic (and pydantic-core, annotated-types, typing-inspection) at constraints.txt's versions.
# MODEL_FOLDER: a Llama-shaped causal LM folder, e.g. SmolLM2 with random weights
# (bench/random_weights.py) where the real weights cannot reach the machine.
# STEPS, FULL_STEPS, SMOKE_STEPS, WARMUP and REPEATS in the environment change the run lengths.
set -u
MODEL=${1:?usage: bench/gpu_check.sh MODEL_FOLDER [OUTPUT_FOLDER]}
OUTPUT=${2:-$(mktemp -d -t gpu-check.XXXXXX)}
STEPS=${STEPS:-60}
FULL_STEPS=${FULL_STEPS:-40}
SMOKE_STEPS=${SMOKE_STEPS:-30}
WARMUP=${WARMUP:-5}
REPEATS=${REPEATS:-1}
BENCH=$(dirname "$0")
ALPACA=$BENCH/../../shared/data/instruct/llamafactory/alpaca_en_demo.json
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$OUTPUT"
echo "run folders and results JSON in $OUTPUT"
STARTED=$(date +%s)
stamp() { echo "=== $(($(date +%s) - STARTED)) s: $*"; }
without_step_losses() { awk -F'|' 'NF < 16'; } # the per-step loss table is in the JSON

smoke() { # precision
  stamp "tunelab train, LoRA, precision $1"
  local run_dir="$OUTPUT/train-$1"
  timeout 120 python3 -m tunelab train "model=$MODEL" "data.train=$ALPACA" data.format=instruction \
    data.max_length=512 method.name=lora train.batch_size=8 "train.max_steps=$SMOKE_STEPS" \
    train.log_every=10 "train.precision=$1" "output_dir=$run_dir" --overwrite 2>&1 | tail -4
  [ -f "$run_dir/summary.json" ] || return 0
  python3 - "$run_dir/summary.json" <<'EOF'
import json, sys
summary = json.load(open(sys.argv[1]))
keys = ("precision", "steps", "tokens_per_s", "steady_tokens_per_s", "padding_share", "mfu",
        "matmul_peak_gflops", "peak_memory_bytes", "train_loss")
print({key: summary.get(key) for key in keys})
EOF
}

smoke fp16
smoke auto

stamp "vs_trl.py, LoRA"
timeout 300 python3 "$BENCH/vs_trl.py" --model "$MODEL" \
  --configs trl-padding,tunelab-padding,trl-packing,tunelab-packing --steps "$STEPS" \
  --warmup-steps "$WARMUP" --repeats "$REPEATS" --threads 4 --output "$OUTPUT/vs_trl_lora.json" 2>&1 | without_step_losses

stamp "tunelab doctor"
timeout 60 python3 -m tunelab doctor

stamp "vs_trl.py, full fine-tuning"
timeout 150 python3 "$BENCH/vs_trl.py" --model "$MODEL" --configs trl-full,tunelab-full \
  --steps "$FULL_STEPS" --warmup-steps "$WARMUP" --repeats "$REPEATS" --threads 4 \
  --output "$OUTPUT/vs_trl_full.json" 2>&1 | without_step_losses
stamp done
