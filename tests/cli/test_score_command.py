"""``tunelab score`` end to end: files in, a table out, the full result written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.cli.main import EXIT_USAGE, main


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_score_accuracy_writes_the_full_result(tmp_path, capsys):
    predictions = jsonl(
        tmp_path / "predictions.jsonl",
        [{"prediction": text} for text in ["Positive.", "negative", "I'd say negative", "no idea", "positive!"]],
    )
    references = tmp_path / "references.txt"
    references.write_text("positive\npositive\nnegative\nnegative\npositive\n", encoding="utf-8")
    output = tmp_path / "out" / "scores.json"

    code = main(["score", f"--predictions={predictions}", f"--references={references}", f"--output={output}"])

    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("metric: accuracy (inferred from the references")  # 2 distinct labels < 5 / 2
    # right: 1, 3, 5 of 5; "no idea" is unmapped
    assert "accuracy       0.6000" in out and "unmapped       1" in out and "count          5" in out
    # per class: negative P = 1/2 (one positive answered negative), R = 1/2; positive P = 2/2, R = 2/3
    assert "label     precision  recall  f1      support" in out
    assert "negative  0.5000     0.5000  0.5000  2" in out
    assert f"scores: {output}" in out
    saved = json.loads(output.read_text(encoding="utf-8"))
    assert saved["metric"] == "accuracy"
    assert saved["metrics"]["accuracy"] == 0.6 and saved["metrics"]["confusion_matrix"] == [[1, 0], [1, 2]]
    assert saved["per_example"][3] == {"label": None, "correct": False}
    assert [path.name for path in output.parent.iterdir()] == ["scores.json"]  # no temporary file left


def test_score_json_from_a_chosen_metric(tmp_path, capsys):
    reference = {"name": "ProjectA", "deadline": "2024-12-31", "priority": "high"}
    predictions = jsonl(tmp_path / "p.jsonl", [{"output": 'Here: {"name": "ProjectA", "priority": "low"}'}])
    references = jsonl(tmp_path / "r.jsonl", [{"completion": reference}])  # an object field becomes JSON text

    assert main(["score", "--predictions", str(predictions), "--references", str(references), "--metric", "json"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "metric: json"
    # 1 correct of 2 predicted and 3 expected fields: P 0.5, R 1/3, F1 0.4
    assert "json_precision    0.5000" in out and "json_recall       0.3333" in out and "json_f1           0.4000" in out


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_bad_jsonl_line_names_the_file_and_line(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text('{"prediction": "a"}\n{"prediction": "b"}\n{"prediction": b}\n', encoding="utf-8")
    references = tmp_path / "references.txt"
    references.write_text("a\nb\nc\n", encoding="utf-8")
    output = tmp_path / "scores.json"

    code = main(["score", "--predictions", str(predictions), "--references", str(references), "--output", str(output)])

    assert code == EXIT_USAGE
    assert error_line(capsys).startswith(f"error: {predictions} line 3: invalid JSON")
    assert not output.exists()


def test_mismatched_counts_and_bad_options_are_one_error_line(tmp_path, capsys):
    three = tmp_path / "three.txt"
    three.write_text("a\nb\nc\n", encoding="utf-8")
    two = tmp_path / "two.txt"
    two.write_text("a\nb\n", encoding="utf-8")

    assert main(["score", "--predictions", str(two), "--references", str(three)]) == EXIT_USAGE
    assert "2 predictions but 3 references" in error_line(capsys)
    assert main(["score", "--predictions", str(two), "--references", str(two), "--metric", "bleu"]) == EXIT_USAGE
    assert "invalid choice: 'bleu'" in error_line(capsys)
    assert main(["score", "--predictions", str(two), "--references", str(two), "--labels", " , "]) == EXIT_USAGE
    assert "--labels" in error_line(capsys)


def test_the_metric_choices_are_the_scoring_metrics():
    from tunelab.cli import score_command
    from tunelab.metrics.scoring import METRICS

    assert score_command._METRICS == METRICS  # repeated there so that `tunelab --help` stays fast
