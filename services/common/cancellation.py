"""Stopping a stage's work when its caller is gone: a ``CancelToken`` the plain functions take.

A gRPC call ends early when its caller cancels it (a job deleted, a worker stopping) or its deadline
(``HPE3D_STAGE_TIMEOUT_S``) passes. The caller has then stopped waiting, so the stage must stop too:
not compute on for nobody, and above all not write its output afterwards, when a retry of the same
call may already be running. ``call_token(context)`` gives the servicer a token that is cancelled as
soon as gRPC ends the call (``context.add_callback``) or its deadline passes; the servicer hands it to
the plain functions, which call ``token.check()`` between frames, tracks or segments and before every
write. ``check`` raises ``CallCancelled``, which the stage interceptor reports as CANCELLED or
DEADLINE_EXCEEDED (nobody reads that status: the caller has gone; it is logged and counted).

Plain functions called outside a server (tests, ``hpe3d lift``, benchmarks) take the default
``NEVER``, which is never cancelled.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class CallCancelled(Exception):
    """The work stopped because its call was cancelled or ran past its deadline."""

    def __init__(self, reason: str, deadline_passed: bool = False):
        super().__init__(reason)
        self.deadline_passed = deadline_passed


class CancelToken:
    """Cancelled by ``cancel(reason)`` or once the monotonic clock passes ``deadline`` (None: none)."""

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline
        self._event = threading.Event()
        self._reason = ""

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self._reason = reason
            self._event.set()

    @property
    def deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or self.deadline_passed

    def check(self) -> None:
        """Raise ``CallCancelled`` when cancelled; call it between units of work and before writes."""
        if self.deadline_passed:
            raise CallCancelled("the call's deadline passed; its work stopped", deadline_passed=True)
        if self._event.is_set():
            raise CallCancelled(f"{self._reason}; its work stopped")

    def each(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, checking the token before each one is asked for (so a cancelled token stops
        the producer too: the next frame is not decoded)."""
        iterator = iter(items)
        while True:
            self.check()
            try:
                item = next(iterator)
            except StopIteration:
                return
            yield item


class _Never(CancelToken):
    def cancel(self, reason: str) -> None:
        raise RuntimeError("NEVER is never cancelled; make a CancelToken of your own")


NEVER: CancelToken = _Never()


def call_token(context) -> CancelToken:
    """The token of a gRPC call: cancelled when the call ends before its handler does (the client
    cancelled, or went away) and past the call's deadline. Ending normally cancels it too, after the
    handler's last write, so a token must not outlive its call."""
    remaining = context.time_remaining()
    # grpc reports "no deadline" as a huge number of seconds
    deadline = time.monotonic() + remaining if remaining is not None and remaining < 10 ** 8 else None
    token = CancelToken(deadline)
    reason = "the call was cancelled by its caller or ended"
    if not context.add_callback(lambda: token.cancel(reason)):
        token.cancel(reason)   # it has ended already
    return token
