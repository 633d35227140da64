#!/usr/bin/env python3
"""SNIPS (a real public set of voice-assistant requests, CC0) as instruction-to-JSON rows.

Reads the JointBERT layout in ../shared/data/instruct/jointbert_snips (``seq.in`` utterance,
``seq.out`` BIO slot tags, ``label`` intent, per split) and writes JSONL rows for tunelab's
``instruction`` format whose answer is a JSON object:

    {"instruction": "Convert the request to JSON with its intent and slots.",
     "input": "play the song little robin redbreast",
     "output": "{\"intent\": \"PlayMusic\", \"slots\": {\"music_item\": \"song\", ...}}",
     "intent": "PlayMusic"}

Slot values are the utterance's words under each BIO span. The rows are spread over the seven
intents in turn, so a short file still holds every intent.

    python3 examples/instruct-json/snips_to_jsonl.py --output runs/instruct-json/data
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import zip_longest
from pathlib import Path

SHARED_SNIPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "instruct" / "jointbert_snips"
INSTRUCTION = "Convert the request to JSON with its intent and slots."


def slot_values(words: list[str], tags: list[str]) -> dict[str, str]:
    """BIO tags to ``{slot: words}``; a second span of the same slot is appended to the first."""
    slots: dict[str, str] = {}
    current = None
    for word, tag in zip(words, tags, strict=True):
        if tag.startswith("B-"):
            current = tag[2:]
            slots[current] = word if current not in slots else f"{slots[current]} {word}"
        elif tag.startswith("I-") and current == tag[2:]:
            slots[current] += f" {word}"
        else:
            current = None
    return slots


def snips_rows(snips: Path, split: str) -> list[dict[str, str]]:
    """Every utterance of a split, in file order, as an instruction row with a JSON answer."""
    folder = snips / split
    columns = [(folder / name).read_text(encoding="utf-8").splitlines() for name in ("seq.in", "seq.out", "label")]
    rows = []
    for utterance, tags, intent in zip(*columns, strict=True):
        words = utterance.split()
        answer = json.dumps({"intent": intent, "slots": slot_values(words, tags.split())}, ensure_ascii=False)
        rows.append({"instruction": INSTRUCTION, "input": " ".join(words), "output": answer, "intent": intent})
    return rows


def balanced(rows: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """The first ``limit`` rows taking each intent in turn (file order within an intent)."""
    by_intent: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_intent.setdefault(row["intent"], []).append(row)
    interleaved = [row for group in zip_longest(*by_intent.values()) for row in group if row is not None]
    return interleaved[:limit]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snips", type=Path, default=SHARED_SNIPS, help="the JointBERT SNIPS folder")
    parser.add_argument("--output", type=Path, default=Path("runs/instruct-json/data"))
    parser.add_argument("--train-rows", type=int, default=700)
    parser.add_argument("--eval-rows", type=int, default=28)
    args = parser.parse_args()
    if not (args.snips / "train" / "seq.in").is_file():
        print(f"error: SNIPS not found at {args.snips} (pass --snips FOLDER)", file=sys.stderr)
        return 2
    train = write_jsonl(args.output / "snips-train.jsonl", balanced(snips_rows(args.snips, "train"), args.train_rows))
    test = write_jsonl(args.output / "snips-eval.jsonl", balanced(snips_rows(args.snips, "test"), args.eval_rows))
    print(f"{train} ({args.train_rows} rows), {test} ({args.eval_rows} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
