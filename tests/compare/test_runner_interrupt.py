"""Ctrl-C in ``tunelab compare``: the finished entries are kept in results.json, the interrupted one
stops at a step with a checkpoint so that the same command goes on from it; exit 130."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import write_comparison

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")


def test_an_interrupted_comparison_keeps_what_finished(tiny_llama, prompt_completion_file, tmp_path):
    out = tmp_path / "out"
    entries = [
        {"name": "quick", "method": "lora"},
        # many micro-batches a step: still training when the signal comes
        {"name": "slow", "method": "lora", "train": {"grad_accum": 256, "batch_size": 1, "log_every": 1}},
    ]
    spec = write_comparison(tmp_path / "compare.yaml", out, tiny_llama, prompt_completion_file, entries, steps=12)
    process = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "compare", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    slow_metrics = out / "runs" / "slow" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (slow_metrics.is_file() and slow_metrics.read_text().strip()):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the slow entry never logged a step"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)

    assert process.returncode == 130, err[-2000:]
    assert "comparison interrupted in entry 'slow'" in err, err[-2000:]
    assert "Traceback" not in err
    records = json.loads((out / "results.json").read_text())
    records = records["records"] if isinstance(records, dict) else records
    assert [(record["name"], record["status"]) for record in records] == [("quick", "finished")]
    slow = out / "runs" / "slow"
    assert not (slow / "summary.json").exists()
    assert list((slow / "checkpoints").glob("step-*")), "the interrupted entry can resume"


def interrupted_while_answering_then_run_again(spec_file, monkeypatch, between) -> dict:
    """Run the comparison with answering interrupted (Ctrl-C), call ``between``, run it again."""
    import tunelab.evaluation.runner as evaluation
    from tunelab.compare.runner import run_comparison
    from tunelab.compare.spec import load_comparison

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "_generate", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_comparison(load_comparison(spec_file), progress=False)
    between()
    (record,) = run_comparison(load_comparison(spec_file), progress=False).records
    return record


def test_an_in_context_entry_interrupted_while_evaluating_is_evaluated_again(
    tiny_llama, prompt_completion_file, tmp_path, monkeypatch
):
    entries = [{"name": "zeroshot", "method": "zeroshot", "eval": {"max_new_tokens": 2, "limit": 4}}]
    spec_file = tmp_path / "compare.yaml"
    write_comparison(
        spec_file, tmp_path / "out", tiny_llama, prompt_completion_file, entries, eval_file=prompt_completion_file
    )
    run = tmp_path / "out" / "runs" / "zeroshot"

    def not_finished():
        assert (run / "config.yaml").is_file() and not (run / "summary.json").exists(), "not marked finished"

    record = interrupted_while_answering_then_run_again(spec_file, monkeypatch, not_finished)
    assert (record["status"], record["action"]) == ("finished", "trained")
    assert "exact_match" in json.loads((run / "summary.json").read_text())


def test_a_trained_entry_interrupted_while_it_answers_is_not_counted_finished(
    tiny_llama, prompt_completion_file, tmp_path, monkeypatch
):
    entries = [{"name": "lora", "method": "lora", "eval": {"generate": True, "max_new_tokens": 2, "limit": 4}}]
    spec_file = tmp_path / "compare.yaml"
    write_comparison(
        spec_file, tmp_path / "out", tiny_llama, prompt_completion_file, entries, 2, prompt_completion_file
    )
    summary_file = tmp_path / "out" / "runs" / "lora" / "summary.json"

    def pending():
        assert json.loads(summary_file.read_text())["pending"] == "eval.generate"

    record = interrupted_while_answering_then_run_again(spec_file, monkeypatch, pending)
    assert (record["status"], record["action"]) == ("finished", "trained")
    summary = json.loads(summary_file.read_text())
    assert "pending" not in summary and "exact_match" in summary
