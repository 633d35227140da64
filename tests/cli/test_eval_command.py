"""``tunelab eval`` on the command line: the prompt shown with its shots, the printed metrics, overrides,
perplexity on text, a trained classifier scored from its probabilities, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

# datasets gives its logger a stderr handler when first imported; importing it here, at collection,
# binds that handler to pytest's session stream rather than to one test's (later closed) capsys stream.
import datasets  # noqa: F401
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import CORPUS, make_labelled_records, write_jsonl
from tunelab.cli.main import EXIT_USAGE, main

TRAIN_ROWS = [
    {"instruction": f"Convert to JSON: finish the {task} by {day}", "output": json.dumps({"task": task, "day": day})}
    for task, day in [("report", "friday"), ("project", "monday"), ("slides", "tuesday")]
]
EVAL_ROWS = [{"instruction": "Convert to JSON: finish the budget by friday", "output": '{"task": "budget"}'}]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def fewshot_run(tiny_llama, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fewshot-cli")
    train_file = write_jsonl(folder / "train.jsonl", TRAIN_ROWS)
    eval_file = write_jsonl(folder / "eval.jsonl", EVAL_ROWS)
    run = folder / "run"
    argv = ["train", "--quiet", f"model={tiny_llama}", f"data.train={train_file}", f"output_dir={run}"]
    assert main([*argv, "method.name=fewshot", "method.shots=2", "eval.max_new_tokens=4"]) == 0
    return run, eval_file


def test_show_prompt_prints_the_shots_before_the_question(fewshot_run, capsys):
    run, eval_file = fewshot_run
    capsys.readouterr()

    assert main(["eval", str(run), "--data", str(eval_file), "--show-prompt", "--quiet", "--max-new-tokens", "3"]) == 0

    out = capsys.readouterr().out
    prompt = out.split("--- prompt of the first example ---\n")[1].split("--- end of prompt ---")[0]
    [prediction] = read_jsonl(run / "predictions.jsonl")
    shot_answers = [TRAIN_ROWS[index]["output"] for index in prediction["shots"]]
    assert len(shot_answers) == 2
    positions = [prompt.index(answer) for answer in shot_answers] + [prompt.index(EVAL_ROWS[0]["instruction"])]
    assert positions == sorted(positions)  # the shots, in order, then the question
    assert prompt.rstrip().endswith("### Assistant:")
    assert "metric         json" in out and "json_f1" in out
    assert f"wrote {run / 'eval.json'}" in out
    assert json.loads((run / "eval.json").read_text())["max_new_tokens"] == 3  # the override, in the run folder


def test_without_show_prompt_no_prompt_is_printed(fewshot_run, tmp_path, capsys):
    run, eval_file = fewshot_run
    capsys.readouterr()

    assert main(["eval", str(run), "--data", str(eval_file), "--output", str(tmp_path), "--quiet"]) == 0

    assert "### User:" not in capsys.readouterr().out
    assert (tmp_path / "eval.json").is_file() and (tmp_path / "predictions.jsonl").is_file()


def test_perplexity_of_a_base_model_on_text_is_exp_of_its_token_loss(tiny_llama, tmp_path, capsys):
    lines = CORPUS[:5]
    text_file = tmp_path / "text.txt"
    text_file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    argv = ["eval", "--model", str(tiny_llama), "--data", str(text_file), "--output", str(tmp_path / "out")]
    assert main([*argv, "--metric", "perplexity", "--quiet"]) == 0

    metrics = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert metrics["metric"] == "perplexity" and metrics["count"] == len(lines)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["mean_token_loss"]), rel=1e-6)
    assert "perplexity" in capsys.readouterr().out
    # the loss is the model's own on each line (BOS ... EOS), averaged over every predicted token
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    total, count = 0.0, 0
    for line in lines:
        ids = torch.tensor([tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]])
        with torch.no_grad():
            logits = model(ids).logits[0, :-1]
        total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    assert metrics["mean_token_loss"] == pytest.approx(total / count, rel=1e-4)


def test_trained_classifier_is_scored_from_its_label_probabilities(tiny_bert, tmp_path, capsys):
    train_file = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(24))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", make_labelled_records(9, seed=1))
    run = tmp_path / "classifier"
    train_argv = [
        "train",
        "--quiet",
        f"model={tiny_bert}",
        "task=classification",
        f"data.train={train_file}",
        f"output_dir={run}",
        "method.name=full",
        "train.max_steps=2",
        "train.batch_size=4",
    ]
    assert main(train_argv) == 0

    assert main(["eval", str(run), "--data", str(eval_file), "--quiet"]) == 0

    metrics = json.loads((run / "eval.json").read_text())
    predictions = read_jsonl(run / "predictions.jsonl")
    assert metrics["metric"] == "accuracy" and metrics["count"] == len(predictions) == 9
    assert [p["reference"] for p in predictions] == [row["label"] for row in make_labelled_records(9, seed=1)]
    for p in predictions:
        assert p["prediction"] == max(p["probabilities"], key=p["probabilities"].get)
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert p["correct"] == (p["prediction"] == p["reference"])
    assert metrics["accuracy"] == pytest.approx(sum(p["correct"] for p in predictions) / len(predictions))
    assert f"accuracy       {metrics['accuracy']:.4f}" in capsys.readouterr().out


def test_a_base_model_needs_an_output_folder(tiny_llama, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    eval_file = write_jsonl(tmp_path / "eval.jsonl", EVAL_ROWS)

    assert main(["eval", "--model", str(tiny_llama), "--data", str(eval_file)]) == EXIT_USAGE

    assert "--output" in error_line(capsys)
    assert not list(tmp_path.rglob("eval.json")) and not list(Path(tiny_llama).glob("eval.json"))


def test_a_run_folder_and_a_model_are_not_both_given(fewshot_run, tiny_llama, capsys):
    run, eval_file = fewshot_run

    assert main(["eval", str(run), "--model", str(tiny_llama), "--data", str(eval_file)]) == EXIT_USAGE

    assert "not both" in error_line(capsys)


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        (json.dumps({"instruction": "no output here"}), "line 3: missing field 'output'"),
        ('{"instruction": "broken', "line 3: invalid JSON"),
    ],
    ids=["missing_field", "invalid_json"],
)
def test_a_bad_data_row_is_one_error_naming_file_and_line(tiny_llama, tmp_path, capsys, second_line, expected):
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps(EVAL_ROWS[0]) + "\n\n" + second_line + "\n", encoding="utf-8")  # line 2 is blank

    argv = ["eval", "--model", str(tiny_llama), "--data", str(data), "--output", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == EXIT_USAGE

    line = error_line(capsys)
    assert str(data) in line and expected in line
    assert not (tmp_path / "out").exists()
