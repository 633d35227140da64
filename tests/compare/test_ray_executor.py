"""``tunelab compare --executor ray`` on a local Ray with two workers: the same records as the
sequential run, a rerun that skips what either executor finished, an entry that fails (its options,
or its worker killed) failing alone, and a comparison folder a worker does not share refused in one
line. Ray starts once for the module (a few seconds) and is shut down after it."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from functools import partial
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ray = pytest.importorskip("ray", reason="the Ray executor needs Ray: pip install 'tunelab[ray]'")

from conftest import write_comparison  # noqa: E402
from tunelab.cli.main import EXIT_USAGE, main  # noqa: E402
from tunelab.compare.executors import EntryWork  # noqa: E402
from tunelab.compare.ray_executor import SHARED_FOLDER_TOKEN, RayExecutor, check_shared_folder  # noqa: E402
from tunelab.compare.runner import ComparisonResult, run_comparison  # noqa: E402
from tunelab.compare.spec import Entry, load_comparison  # noqa: E402
from tunelab.errors import UserError  # noqa: E402

ENTRIES = [
    {"name": "lora", "method": {"name": "lora", "r": 4}},
    {"name": "ia3", "method": "ia3"},
    {"name": "full", "method": "full", "resources": {"cpus": 1}},
    {"name": "top", "method": {"name": "last_layers", "layers": 1}},
]
# What a CPU run decides: exactly the same whichever process trained it (times and memory are not).
SAME_FIGURES = (
    "name", "status", "action", "error", "method", "options", "task", "trainable_params", "total_params",
    "trainable_share", "steps", "tokens_seen", "artifact_bytes", "weights_file_bytes", "lr",
)  # fmt: skip
CLOSE_FIGURES = ("train_loss", "eval_loss")


@pytest.fixture(scope="module")
def local_ray():
    """Two CPUs, so two entries train at once; the executor uses this Ray and leaves it running."""
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def comparison_file(tiny_bert, labelled_data, tmp_path_factory) -> Path:
    """Four classification entries on the tiny BERT (accuracy is among the figures), two steps each."""
    folder = tmp_path_factory.mktemp("ray-compare")
    train_file, eval_file = labelled_data
    # "seq" and "ray": the model card names the run folder, so the artifacts' sizes match only with equal lengths
    path = write_comparison(folder / "compare.yaml", folder / "seq", tiny_bert, train_file, ENTRIES, 2, eval_file)
    tree = json.loads(path.read_text())
    tree["base"].update({"task": "classification", "train": {"batch_size": 8, "lr": 1e-3}})
    path.write_text(json.dumps(tree))
    return path


@pytest.fixture(scope="module")
def sequential(comparison_file) -> ComparisonResult:
    return run_comparison(load_comparison(comparison_file), progress=False)


@pytest.fixture(scope="module")
def on_ray(comparison_file, local_ray) -> ComparisonResult:
    spec = load_comparison(comparison_file, [f"output_dir={comparison_file.parent / 'ray'}"])
    return run_comparison(spec, progress=False, executor="ray")


def by_name(records: list[dict]) -> dict[str, dict]:
    return {record["name"]: record for record in records}


def test_four_entries_on_two_ray_workers_give_the_sequential_records(sequential, on_ray):
    assert [record["name"] for record in on_ray.records] == [entry["name"] for entry in ENTRIES]
    saved = json.loads(on_ray.results_json.read_text(encoding="utf-8"))["records"]
    assert saved == on_ray.records, "results.json holds the records, in the file's order"
    assert on_ray.results_csv.is_file() and on_ray.report_html.is_file()
    expected = by_name(sequential.records)
    for name, record in by_name(saved).items():
        assert record["status"] == "finished" and record["action"] == "trained"
        assert {key: record[key] for key in SAME_FIGURES} == {key: expected[name][key] for key in SAME_FIGURES}
        assert record["metrics"] == expected[name]["metrics"] and "accuracy" in record["metrics"], name
        for key in CLOSE_FIGURES:
            assert record[key] == pytest.approx(expected[name][key], rel=1e-5), (name, key)
        assert record["run_dir"] == str(on_ray.output_dir / "runs" / name)
        assert (Path(record["run_dir"]) / "summary.json").is_file()
    assert not (on_ray.output_dir / SHARED_FOLDER_TOKEN).exists(), "the shared-folder token is removed after the run"


def test_a_rerun_on_ray_skips_the_entries_the_sequential_run_finished(sequential, comparison_file, local_ray, capsys):
    summaries = sorted(sequential.output_dir.glob("runs/*/summary.json"))
    before = [(path.read_bytes(), path.stat().st_mtime_ns) for path in summaries]

    assert main(["compare", str(comparison_file), "--quiet", "--executor", "ray"]) == 0

    records = json.loads(sequential.results_json.read_text(encoding="utf-8"))["records"]
    assert [(record["name"], record["action"]) for record in records] == [(e["name"], "skipped") for e in ENTRIES]
    assert [(path.read_bytes(), path.stat().st_mtime_ns) for path in summaries] == before
    assert "report:" in capsys.readouterr().out


def exit_in(doomed: str, work: EntryWork, entry: Entry) -> dict:
    """A task body that kills its own worker process when it reaches the doomed entry."""
    if entry.name == doomed:
        os._exit(3)
    return work(entry)


class DyingWorkerExecutor(RayExecutor):
    """The real Ray executor, whose worker dies on one entry (as when the OOM killer takes it)."""

    def run(self, entries, work, folder):
        return super().run(entries, partial(exit_in, "killed", work), folder)


def test_a_failing_entry_and_a_dead_worker_fail_alone(tiny_llama, prompt_completion_file, tmp_path, local_ray):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    entries = [
        {"name": "ok", "method": {"name": "lora", "r": 2}},
        {"name": "killed", "method": "lora"},
        {"name": "broken", "method": {"name": "last_layers", "layers": 99}},  # the tiny Llama has 2 blocks
    ]
    path = write_comparison(tmp_path / "c.yaml", tmp_path / "out", tiny_llama, prompt_completion_file, entries, 1)

    result = run_comparison(load_comparison(path), progress=False, executor=DyingWorkerExecutor())

    records = by_name(result.records)
    assert list(records) == ["ok", "killed", "broken"]
    assert (records["ok"]["status"], records["ok"]["action"]) == ("finished", "trained")
    assert records["broken"]["status"] == "failed"
    assert records["broken"]["error"] == "method.layers=99 but the model has only 2 blocks"
    killed = records["killed"]
    assert (killed["status"], killed["action"], killed["method"]) == ("failed", "failed", "lora")
    assert killed["error"].startswith("its Ray worker died") and "\n" not in killed["error"]

    rerun = run_comparison(load_comparison(path), progress=False, executor="ray")  # the real worker: trained now
    assert [record["action"] for record in rerun.records] == ["skipped", "trained", "failed"]


def test_a_worker_that_does_not_share_the_comparison_folder_is_refused_in_one_line(tmp_path):
    (tmp_path / SHARED_FOLDER_TOKEN).write_text("the driver's token", encoding="utf-8")
    check_shared_folder(tmp_path, "the driver's token")
    with pytest.raises(UserError) as refused:
        check_shared_folder(tmp_path, "another driver's token")  # as on a host whose folder is its own
    message = str(refused.value)
    assert str(tmp_path) in message and socket.gethostname() in message and "\n" not in message
    assert "not shared" in message

    (tmp_path / f".write-check-{socket.gethostname()}-{os.getpid()}").mkdir()  # where the worker's probe goes
    with pytest.raises(UserError, match=f"{tmp_path}: Ray worker host {socket.gethostname()} cannot write there"):
        check_shared_folder(tmp_path, "the driver's token")


def test_an_entry_asking_for_more_than_the_local_ray_has_fails_at_once(
    tiny_llama, prompt_completion_file, tmp_path, local_ray
):
    entries = [{"name": "gpu", "method": "lora", "resources": {"gpus": 64}}]
    path = write_comparison(tmp_path / "c.yaml", tmp_path / "out", tiny_llama, prompt_completion_file, entries, 1)
    (record,) = run_comparison(load_comparison(path), progress=False, executor="ray").records
    assert record["status"] == "failed"
    assert record["error"].startswith("asks Ray for 64 GPU; this machine's Ray has")


def test_ray_address_with_the_sequential_executor_is_one_line(comparison_file, capsys):
    args = ["compare", str(comparison_file), "--executor", "sequential", "--ray-address", "ray://nowhere:10001"]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --ray-address is for --executor ray; the sequential executor runs here"]
