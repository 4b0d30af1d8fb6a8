"""On a failed fault test, print the tail of every part's log: what the supervisor and the parts saw."""
from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed and "stack" in item.fixturenames:
        stack = item.funcargs.get("stack")
        for proc in getattr(stack, "running", []):
            rep.sections.append((f"log of {proc.name} (restarts {proc.restarts})", proc.log_tail(20)))
