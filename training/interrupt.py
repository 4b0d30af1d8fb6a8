"""Stop a long training run cleanly: on SIGINT / SIGTERM save its resume state, say so, and exit with 130."""
from __future__ import annotations

import signal
from collections.abc import Callable


def save_on_signal(save: Callable[[], None], say: Callable[[int], None]) -> dict:
    """Install handlers for SIGINT and SIGTERM that call ``save()``, then ``say(signum)``, then exit with status
    130. Returns the previous handlers (``{signum: handler}``) for :func:`restore`."""

    def handler(signum, frame):  # noqa: ARG001
        save()
        say(signum)
        raise SystemExit(130)

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def restore(previous: dict) -> None:
    """Put back the handlers :func:`save_on_signal` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)
