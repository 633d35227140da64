"""The ``tunelab`` command shows each library deprecation once, as one line, and carries on."""

from __future__ import annotations

import warnings

from tunelab.cli.main import show_deprecations_once


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
