"""Prompting against fine-tuning on SNIPS: zero-shot, few-shot (random and similar) and LoRA, one command.

SNIPS utterances (../shared/data/instruct/jointbert_snips, JointBERT layout) become instruction
rows whose answer is a JSON object, ``{"intent": "PlayMusic", "slots": {"artist": "westbam", ...}}``
(slot values are the utterance's words under each BIO span). Every strategy runs on the same model
(the real pretrained stories260K Llama from ../shared, the only causal LM available offline here)
through ``tunelab compare`` at one budget, and is scored on the same test utterances with
tunelab's json metric: validity, field F1, exact match. The few-shot ``similar`` selector's
retrieval is checked too: recall@3 is the share of test utterances for which at least one of the 3
selected shots has the same intent.

stories260K was trained on children's stories, so prompting alone scores near zero; its 512-piece
tokenizer spells a SNIPS answer in 100 to 200 tokens, hence max_new_tokens 200. What matters
is that every number is real, measured the same way, from one command:

    python bench/snips_strategies.py                     # 2,000 training rows, 100 test rows, LoRA 300 steps
    python bench/snips_strategies.py --train-rows 500 --test-rows 40 --steps 60    # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPS = ROOT.parent / "shared" / "data" / "instruct" / "jointbert_snips"
MODEL = ROOT.parent / "shared" / "data" / "models" / "stories260K-hf"
# the SNIPS conversion is the instruct-json example's own (examples/instruct-json/snips_to_jsonl.py)
sys.path.insert(0, str(ROOT / "examples" / "instruct-json"))
import snips_to_jsonl  # noqa: E402


def snips_rows(split: str, limit: int) -> list[dict[str, str]]:
    """The first ``limit`` utterances of a split as instruction rows with a JSON answer."""
    return snips_to_jsonl.snips_rows(SNIPS, split)[:limit]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def comparison_file(folder: Path, train: Path, test: Path, steps: int, output: Path) -> Path:
    import yaml

    spec = {
        "output_dir": str(output),
        "base": {
            "model": str(MODEL),
            "task": "causal_lm",
            "data": {"train": str(train), "eval": str(test), "format": "instruction", "max_length": 256},
            "train": {"batch_size": 16, "lr": 3e-3, "warmup_ratio": 0.05, "seed": 0, "log_every": 10},
            "eval": {"generate": True, "metric": "json", "max_new_tokens": 200, "batch_size": 16},
        },
        "budget": {"steps": steps},
        "entries": [
            {"name": "zeroshot", "method": "zeroshot"},
            {"name": "fewshot-random", "method": {"name": "fewshot", "shots": 3, "select": "random"}},
            {"name": "fewshot-similar", "method": {"name": "fewshot", "shots": 3, "select": "similar"}},
            {"name": "lora", "method": {"name": "lora", "r": 16, "alpha": 32}},
        ],
    }
    path = folder / "snips-compare.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def similar_recall(run_dir: Path, train_rows: list[dict], test_rows: list[dict], k: int = 3) -> float | None:
    """recall@k of the similar selector: a selected shot shares the test utterance's intent."""
    from tunelab.retrieval.recall import recall_at_k

    predictions = run_dir / "predictions.jsonl"
    if not predictions.is_file():
        return None
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    # the selector's choice before any trimming: recompute it, since the prompt may have dropped shots
    from tunelab.config.schema import PromptConfig
    from tunelab.methods.in_context import similar_examples
    from tunelab.prompting.examples import prompted_example

    prompt = PromptConfig()
    queries = [prompted_example(row, "instruction", prompt) for row in test_rows[: len(records)]]
    train = [prompted_example(row, "instruction", prompt) for row in train_rows]
    chosen = similar_examples(queries, train, k, "minilm")
    retrieved = [[train_rows[index]["intent"] for index in ids] for ids in chosen]
    return recall_at_k(retrieved, [row["intent"] for row in test_rows[: len(records)]], k)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300, help="LoRA optimizer steps (the comparison's budget)")
    parser.add_argument("--output", default="runs/bench-snips", help="the comparison folder")
    args = parser.parse_args()
    if not SNIPS.is_dir() or not MODEL.is_dir():
        print(f"needs ../shared/data (SNIPS and stories260K-hf); not found at {SNIPS.parent.parent}", file=sys.stderr)
        return 1
    import torch

    from tunelab.compare.report import format_table
    from tunelab.compare.runner import run_comparison
    from tunelab.compare.spec import load_comparison

    torch.set_num_threads(1)  # on a small shared CPU, one thread is steadier (see packing_throughput.py)
    train_rows, test_rows = snips_rows("train", args.train_rows), snips_rows("test", args.test_rows)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        train = write_jsonl(folder / "snips-train.jsonl", train_rows)
        test = write_jsonl(folder / "snips-test.jsonl", test_rows)
        spec = load_comparison(comparison_file(folder, train, test, args.steps, Path(args.output).absolute()))
        result = run_comparison(spec)
        recall = similar_recall(spec.output_dir / "runs" / "fewshot-similar", train_rows, test_rows)
    print(format_table(result.records))
    print()
    print("| strategy | json validity | field F1 | exact match | trainable params | time s |")
    print("|---|---|---|---|---|---|")
    for record in result.records:
        metrics = record.get("metrics") or {}
        figures = [metrics.get(key) for key in ("json_validity", "json_f1", "json_exact_match")]
        shown = " | ".join("-" if value is None else f"{value:.3f}" for value in figures)
        print(
            f"| {record['name']} | {shown} | {record.get('trainable_params')} | {record.get('train_time_s') or 0:.1f} |"
        )
    print(
        f"\nrecall@3 of the similar selector (a shot with the query's intent): {recall:.3f}"
        if recall is not None
        else ""
    )
    print(f"results: {result.results_json}  report: {result.report_html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
