"""Prints the fuzz suite's counts by outcome at the end of the run."""

from __future__ import annotations

from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.fuzz.strategies import BUDGET, OUTCOMES

    if not OUTCOMES:
        return
    terminalreporter.write_sep("-", f"fuzz: {sum(OUTCOMES.values())} calls, budget {BUDGET}")
    for outcome, count in sorted(OUTCOMES.items()):
        terminalreporter.write_line(f"  {outcome:40s} {count}")
