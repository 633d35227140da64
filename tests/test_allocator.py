"""The ``tunelab`` command runs on tcmalloc where the machine has it, says so, and can be told not to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab import allocator
from tunelab.allocator import PRELOADED_VARIABLE, find_tcmalloc, loaded_allocator, preload_environment
from tunelab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
NO_TCMALLOC = "no tcmalloc on this machine (scripts/install.sh installs libtcmalloc-minimal4 where apt can)"


def test_auto_preloads_the_library_found_before_any_other_preload():
    environment = preload_environment({"LD_PRELOAD": "/opt/other.so"}, library="/lib/libtcmalloc_minimal.so.4")
    assert environment["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4:/opt/other.so"
    assert environment[PRELOADED_VARIABLE] == "1"  # the re-executed process does not execute again


@pytest.mark.parametrize(
    "environ",
    [
        {"TUNELAB_ALLOCATOR": "system"},
        {PRELOADED_VARIABLE: "1"},
        {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"},  # the user's own choice stands
        {"LD_PRELOAD": "libtcmalloc.so.4"},
    ],
)
def test_no_relaunch_where_the_choice_is_made_already(environ):
    assert preload_environment(environ, library="/lib/libtcmalloc_minimal.so.4") is None


def test_system_drops_only_the_tcmalloc_a_tunelab_parent_preloaded():
    inherited = {"TUNELAB_ALLOCATOR": "system", PRELOADED_VARIABLE: "1", "LD_PRELOAD": "libtcmalloc.so.4:/opt/o.so"}
    environment = preload_environment(inherited)
    assert environment["LD_PRELOAD"] == "/opt/o.so" and PRELOADED_VARIABLE not in environment
    assert preload_environment(environment) is None  # the re-executed process goes on
    assert preload_environment({"TUNELAB_ALLOCATOR": "system", "LD_PRELOAD": "libtcmalloc.so.4"}) is None  # the user's


def test_a_missing_library_is_no_error_under_auto_but_one_clear_error_when_asked_for(monkeypatch):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda environ: None)
    assert preload_environment({}) is None
    with pytest.raises(UserError, match="TUNELAB_ALLOCATOR=tcmalloc: no tcmalloc library.*apt install"):
        preload_environment({"TUNELAB_ALLOCATOR": "tcmalloc"})
    with pytest.raises(UserError, match="TUNELAB_ALLOCATOR=fast: expected one of auto, tcmalloc, system"):
        preload_environment({"TUNELAB_ALLOCATOR": "fast"})


def test_loaded_allocator_reads_the_process_mappings(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10\n")
    assert loaded_allocator(maps) == "tcmalloc"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert loaded_allocator(maps) == "system"


def run_doctor(**environ: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", PRELOADED_VARIABLE)}
    environment.update(
        environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    )
    return subprocess.run(
        [sys.executable, "-m", "tunelab", "doctor"], capture_output=True, text=True, env=environment, timeout=300
    )


def allocator_line(result: subprocess.CompletedProcess) -> str:
    return next(line for line in result.stdout.splitlines() if " allocator " in line)


@pytest.mark.skipif(not sys.platform.startswith("linux") or find_tcmalloc() is None, reason=NO_TCMALLOC)
def test_the_command_runs_on_tcmalloc_unless_told_otherwise():
    assert allocator_line(run_doctor()).split()[-1] == "tcmalloc"
    assert "TUNELAB_ALLOCATOR=system" in allocator_line(run_doctor(TUNELAB_ALLOCATOR="system"))


def test_a_bad_choice_is_one_line_and_exit_2():
    result = run_doctor(TUNELAB_ALLOCATOR="fast")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: TUNELAB_ALLOCATOR=fast: expected one of auto, tcmalloc, system"
