"""``tunelab doctor``: check the install and say what to fix (exit 1 when something needs fixing)."""

from __future__ import annotations

import argparse

COMMANDS = ("doctor",)


def register(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("doctor", help="check the install: torch, library versions, bitsandbytes, models, cache")


def run(args: argparse.Namespace) -> int:
    from tunelab.doctor import diagnose

    findings = diagnose()
    for finding in findings:
        print(finding.line())
    broken = [finding for finding in findings if not finding.ok]
    print(f"\n{len(broken)} thing(s) to fix" if broken else "\neverything is in order")
    return 1 if broken else 0
