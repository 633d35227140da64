"""The ``tunelab`` command shows each library deprecation once, as one line, and carries on; the
ones no code of ours can avoid are not shown, in the command as in the test suite."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

from tunelab.cli.main import UNAVOIDABLE_DEPRECATIONS, show_deprecations_once

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_a_deprecation_is_shown_once_as_one_line(capsys):
    with warnings.catch_warnings():
        show_deprecations_once()
        for _ in range(3):
            warnings.warn("`old_argument` is deprecated and will be removed in v6", FutureWarning, stacklevel=1)
        warnings.warn("`other` is deprecated", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "tunelab: warning: FutureWarning: `old_argument` is deprecated and will be removed in v6",
        "tunelab: warning: DeprecationWarning: `other` is deprecated",
    ]


def test_the_unavoidable_library_deprecations_are_not_shown(capsys):
    with warnings.catch_warnings():
        show_deprecations_once()
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` "
            "instead.",
            FutureWarning,
            stacklevel=1,
        )
        warnings.warn(
            "`torch.jit.script_method` is deprecated. Please switch to `torch.compile` or `torch.export`.",
            DeprecationWarning,
            stacklevel=1,
        )
        warnings.warn("`torch.jit.script_method` is deprecated", FutureWarning, stacklevel=1)  # another category
    err = capsys.readouterr().err.splitlines()
    assert err == ["tunelab: warning: FutureWarning: `torch.jit.script_method` is deprecated"]


def test_the_command_hides_exactly_what_the_test_suite_ignores():
    filters = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]["filterwarnings"]
    ignored = set()
    for entry in filters:
        action, message, category = (entry.split(":") + ["", ""])[:3]
        if action == "ignore" and category in ("DeprecationWarning", "FutureWarning"):
            ignored.add((message, category))
    assert ignored == {(message, category.__name__) for message, category in UNAVOIDABLE_DEPRECATIONS}
