"""``train.report_to``: every metrics line and the resolved config reach the trackers through
accelerate's own (TensorBoard read back with its own reader, MLflow with a local file store,
W&B offline where installed); a comparison's entries are one tracked run each, grouped under the
comparison's name; a tracker that is unknown or not installed is one clear line."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import make_labelled_records, make_records, training_config, write_comparison, write_jsonl
from tunelab.cli.main import main
from tunelab.compare.runner import run_comparison
from tunelab.compare.spec import load_comparison
from tunelab.errors import UserError
from tunelab.training.recipe import train
from tunelab.training.tracking import check_trackers, hyperparameters


def metrics_by_step(run_dir, key: str) -> dict[int, float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {line["step"]: line[key] for line in lines if key in line}


def test_the_config_becomes_flat_hyperparameters_of_simple_types():
    flat = hyperparameters({"model": "m", "train": {"lr": 1e-3, "report_to": ["mlflow"]}, "prompt": {"system": None}})
    assert flat == {"model": "m", "train.lr": 1e-3, "train.report_to": '["mlflow"]', "prompt.system": "null"}


def test_an_unknown_tracker_and_a_missing_package_are_one_line(monkeypatch):
    with pytest.raises(UserError, match=r"train.report_to: unknown tracker 'nope' \(known: .*tensorboard"):
        check_trackers(["nope"])
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"tensorboard needs its package: pip install 'tunelab\[tensorboard\]'"):
        check_trackers(["tensorboard"])


def test_tensorboard_holds_every_logged_figure(tiny_llama, tmp_path):
    pytest.importorskip("tensorboard", reason="needs the tensorboard extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_jsonl(tmp_path / "train.jsonl", make_records(24))
    options = {"method.name": "lora", "method.r": 4, "train.max_steps": 6, "train.log_every": 2}
    config = training_config(tiny_llama, data, tmp_path / "run", **options, **{"train.report_to": "tensorboard"})
    result = train(config, progress=False)

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "tunelab"))
    events.Reload()
    for key in ("loss", "lr", "tokens_per_s"):
        logged = {event.step: event.value for event in events.Scalars(key)}
        expected = metrics_by_step(result.run_dir, key)
        assert logged.keys() == expected.keys() == {2, 4, 6}
        assert logged == pytest.approx(expected, rel=1e-6)
    (final,) = events.Scalars("final/train_loss")
    assert final.value == pytest.approx(result.summary["train_loss"], rel=1e-6)
    (hparams,) = (tmp_path / "run" / "tensorboard" / "tunelab").rglob("hparams.yml")
    assert yaml.safe_load(hparams.read_text())["method.r"] == 4


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="needs the mlflow extra")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks to opt in to a file store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    return mlflow


def test_a_comparison_is_one_mlflow_run_per_entry_under_its_name(mlflow_store, tiny_bert, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", make_labelled_records(24))
    eval_file = write_jsonl(tmp_path / "eval.jsonl", make_labelled_records(9, seed=1))
    entries = [
        {"name": "lora", "method": {"name": "lora", "r": 4}, "train": {"lr": 1e-2}},
        {"name": "features", "method": "features"},
    ]
    spec_file = write_comparison(
        tmp_path / "compare.yaml", tmp_path / "sentiment-cmp", tiny_bert, train_file, entries, 4, eval_file
    )
    overrides = ["base.task=classification", "base.train.report_to=mlflow", "base.train.log_every=2"]
    result = run_comparison(load_comparison(spec_file, overrides), progress=False)
    assert [record["status"] for record in result.records] == ["finished", "finished"]

    experiment = mlflow_store.get_experiment_by_name("sentiment-cmp")
    runs = {
        run.info.run_name: run for run in mlflow_store.search_runs([experiment.experiment_id], output_format="list")
    }
    assert set(runs) == {"lora", "features"}
    client = mlflow_store.tracking.MlflowClient()
    for name, run in runs.items():
        tracked = mlflow_store.get_run(run.info.run_id)
        assert tracked.data.params["method.name"] == name and tracked.data.params["task"] == "classification"
        summary = json.loads((tmp_path / "sentiment-cmp" / "runs" / name / "summary.json").read_text())
        assert tracked.data.metrics["final/accuracy"] == pytest.approx(summary["accuracy"])
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "loss")}
        assert history == pytest.approx(metrics_by_step(tmp_path / "sentiment-cmp" / "runs" / name, "loss"))
        assert tracked.info.status == "FINISHED"


def test_wandb_offline_gets_the_run(tiny_llama, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="W&B is tested where its package is installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    data = write_jsonl(tmp_path / "train.jsonl", make_records(16))
    config = training_config(tiny_llama, data, tmp_path / "run", **{"train.report_to": "wandb"})
    train(config, progress=False)
    assert any((tmp_path / "wandb").glob("offline-run-*"))


def test_the_command_line_takes_a_list_of_trackers(tiny_llama, tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", make_records(8))
    arguments = [f"model={tiny_llama}", f"data.train={data}", f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(["train", *arguments, "train.report_to=tensorboard,nope"]) == 2
    assert "unknown tracker 'nope'" in capsys.readouterr().err
