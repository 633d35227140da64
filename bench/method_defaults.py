"""Method-aware defaults, checked: each method on Financial PhraseBank with nothing but its name and the data.

The 50%-agreement file (4,846 sentences) is split 80/20, stratified, seed 0, as
``phrasebank_minilm.py`` splits it, and written as JSONL under ``runs/method-defaults/data``.
Each method then trains through the CLI as a newcomer would run it:

    tunelab train model=minilm task=classification data.format=classification \\
        data.train=train.jsonl data.eval=test.jsonl data.max_length=128 method.name=METHOD

(nothing else: learning rate, weight decay, epochs and batch are the defaults, the method's own
where it has them). It prints each method's accuracy on the 970 test sentences beside the
acceptance threshold of issue 12 (features 0.75; last_layers, lora, dora, adapter 0.80; full 0.83;
prompt and prefix above the majority class, 0.594).

    python bench/method_defaults.py                     # every method, ~20 min on 2 CPU cores
    python bench/method_defaults.py --methods lora,full
    python bench/method_defaults.py --data sst2 --methods features,lora,full   # SST-2, its dev split
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import phrasebank_minilm as phrasebank  # noqa: E402  (the same file, the same split)

OUTPUT = phrasebank.PROJECT_ROOT / "runs" / "method-defaults"
MAJORITY = 576 / 970  # always "neutral" on the test split
THRESHOLDS = {
    "features": 0.75,
    "last_layers": 0.80,
    "lora": 0.80,
    "dora": 0.80,
    "adapter": 0.80,
    "full": 0.83,
    "prompt": MAJORITY,
    "prefix": MAJORITY,
}


SST2 = phrasebank.SHARED_DATA / "classification" / "sst2"


def sst2_files(folder: Path) -> tuple[Path, Path]:
    """SST-2's own train and dev splits ('<0|1> <tokenized sentence>'), as JSONL text and label."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for split_name in ("train", "dev"):
        lines = (SST2 / f"stsa.binary.{split_name}").read_text(encoding="utf-8").splitlines()
        rows = [(text.strip(), "positive" if label == "1" else "negative") for label, _, text in
                (line.partition(" ") for line in lines if line.strip())]  # fmt: skip
        phrasebank.write_jsonl(folder / f"{split_name}.jsonl", rows)
        files.append(folder / f"{split_name}.jsonl")
    return files[0], files[1]


def split(folder: Path) -> tuple[Path, Path]:
    from sklearn.model_selection import train_test_split

    rows = phrasebank.read_phrasebank()
    labels = [label for _, label in rows]
    train, test = train_test_split(rows, test_size=0.2, stratify=labels, random_state=0)
    folder.mkdir(parents=True, exist_ok=True)
    phrasebank.write_jsonl(folder / "train.jsonl", train)
    phrasebank.write_jsonl(folder / "test.jsonl", test)
    return folder / "train.jsonl", folder / "test.jsonl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(THRESHOLDS))
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--data", choices=("phrasebank", "sst2"), default="phrasebank")
    args = parser.parse_args()
    phrasebank.check_shared_data()
    if args.data == "sst2":  # SST-2's own splits: 6,920 training sentences, scored on the 872 of dev
        args.output = args.output.with_name(args.output.name + "-sst2")
        train, test = sst2_files(args.output / "data")
    else:
        train, test = split(args.output / "data")
    results = {}
    for method in args.methods.split(","):
        run = args.output / method
        command = ["tunelab", "train", "model=minilm", "task=classification", "data.format=classification"]
        command += [f"data.train={train}", f"data.eval={test}", "data.max_length=128", f"method.name={method}"]
        command += [f"output_dir={run}", "--overwrite", "--quiet"]
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        summary = json.loads((run / "summary.json").read_text())
        results[method] = {
            "accuracy": summary["accuracy"],
            "macro_f1": summary["macro_f1"],
            "threshold": THRESHOLDS.get(method) if args.data == "phrasebank" else None,
            "steps": summary["steps"],
            "train_time_s": round(summary["train_time_s"], 1),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        print(json.dumps({method: results[method]}), flush=True)
    print("\n| method | lr (its default) | accuracy | macro-F1 | threshold | met | steps | train time s |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    from tunelab.methods.config_loading import load_config

    for method, figures in results.items():
        lr = load_config(None, ["model=minilm", "task=classification", f"method.name={method}"]).train.lr
        threshold = figures["threshold"]
        met = "-" if threshold is None else ("yes" if figures["accuracy"] >= threshold else "**no**")
        shown = "" if threshold is None else f"{threshold:.3f}"
        print(
            f"| {method} | {lr:g} | {figures['accuracy']:.4f} | {figures['macro_f1']:.4f} | {shown} | {met} | "
            f"{figures['steps']} | {figures['train_time_s']} |"
        )
    (args.output / "method_defaults.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
