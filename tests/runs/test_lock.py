"""A run, comparison or pipeline folder is held by one tunelab process at a time; the lock goes
with the process however it ends, and a stale one is taken over with a line saying so."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

from conftest import write_comparison
from tunelab.cli.main import main
from tunelab.errors import UserError
from tunelab.runs.lock import FolderLock, lock_file_for

HOLD = """
import sys, time
from tunelab.runs.lock import FolderLock
with FolderLock(sys.argv[1], "run folder"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of ``tmp_path / 'run'``."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_train_into_a_held_folder_is_refused_and_changes_nothing(
    holder, tiny_llama, prompt_completion_file, tmp_path, capsys
):
    run = tmp_path / "run"
    code = main(["train", f"model={tiny_llama}", f"data.train={prompt_completion_file}", f"output_dir={run}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: run folder {run} is in use by another tunelab process (pid {holder.pid}); " + (
        "wait for it to finish, or choose another folder"
    )
    assert not run.exists()


def test_the_lock_is_released_on_exit_and_after_an_error(tmp_path):
    second = FolderLock(tmp_path / "run", "run folder")
    with FolderLock(tmp_path / "run", "run folder"), pytest.raises(UserError, match="in use by another"):
        second.__enter__()
    with pytest.raises(RuntimeError), FolderLock(tmp_path / "run", "run folder"):
        raise RuntimeError("boom")
    with FolderLock(tmp_path / "run", "run folder"):
        pass
    assert lock_file_for(tmp_path / "run").read_text() == ""


def test_a_killed_holders_lock_is_taken_over_with_a_line(tmp_path, caplog):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    process.kill()  # SIGKILL: no clean exit, the pid stays in the lock file
    process.wait()
    caplog.set_level(logging.WARNING, logger="tunelab")
    started = time.perf_counter()
    with FolderLock(tmp_path / "run", "run folder"):
        pass
    assert time.perf_counter() - started < 5
    assert f"taking over the lock of process {process.pid}, no longer running" in caplog.text


def test_a_comparison_folder_is_locked_too(holder, tiny_llama, prompt_completion_file, tmp_path):
    from tunelab.compare.runner import run_comparison
    from tunelab.compare.spec import load_comparison

    entries = [{"name": "lora", "method": "lora"}]
    spec_file = write_comparison(
        tmp_path / "compare.yaml", tmp_path / "run", tiny_llama, prompt_completion_file, entries
    )
    with pytest.raises(UserError, match=r"comparison folder .*run is in use by another tunelab process"):
        run_comparison(load_comparison(spec_file), progress=False)
    assert not (tmp_path / "run" / "results.json").exists()
