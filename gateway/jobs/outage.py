"""Waiting out outages: one retry helper for stage calls and storage, bounded by an outage budget.

A call that fails with a *transient* error (gRPC UNAVAILABLE or DEADLINE_EXCEEDED, storage that
cannot be reached or answers 5xx) is retried with capped exponential back-off and jitter until it
succeeds or the outage (measured from the first failure of this call) has lasted
``HPE3D_OUTAGE_BUDGET_S``; then the last error is raised as ``OutageTooLong``. Any other error is
raised at once. Every retried call must be idempotent (stage calls and object writes are).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from minio.error import S3Error

from services.common.storage import StorageUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_GRPC = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_TRANSIENT_S3_CODES = ("Internal", "SlowDown", "ServiceUnavailable", "RequestTimeout")


class OutageTooLong(Exception):
    """A dependency stayed down longer than the outage budget; ``cause`` is its last error."""

    def __init__(self, what: str, waited_s: float, cause: BaseException):
        super().__init__(f"{what}: still failing after {waited_s:.0f} s: {describe(cause)}")
        self.what = what
        self.waited_s = waited_s
        self.cause = cause


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details() or ''}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` means "a dependency is down or overloaded", worth waiting for."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code() in TRANSIENT_GRPC
    if isinstance(exc, StorageUnavailable):
        return True
    if isinstance(exc, S3Error):
        return bool(exc.code) and exc.code.startswith(_TRANSIENT_S3_CODES)
    return False


@dataclass(frozen=True)
class Backoff:
    """Delays of successive retries: ``first_s * factor**n``, at most ``cap_s``, each scaled by a
    random factor in ``[1 - jitter, 1 + jitter]`` so that many waiting jobs do not retry in step."""

    first_s: float = 0.5
    cap_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.25

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = min(self.cap_s, self.first_s * self.factor ** attempt)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base * spread


@dataclass
class OutagePolicy:
    """How long to wait out one outage (``budget_s``) and how to space the retries."""

    budget_s: float
    backoff: Backoff = Backoff()
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def call(self, what: str, attempt: Callable[[], Awaitable[T]],
                   on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        """Run ``attempt`` until it succeeds; transient failures are retried within the budget."""
        first_failure: float | None = None
        n = 0
        while True:
            try:
                return await attempt()
            except Exception as exc:  # noqa: BLE001 - sorted below
                if not is_transient(exc):
                    raise
                now = self.clock()
                first_failure = now if first_failure is None else first_failure
                waited = now - first_failure
                delay = self.backoff.delay(n)
                if waited + delay > self.budget_s:
                    raise OutageTooLong(what, waited, exc) from exc
                log.warning("%s: %s (waited %.1f s of %.0f s), retrying in %.1f s", what, describe(exc), waited,
                            self.budget_s, delay)
                if on_retry is not None:
                    on_retry(exc, delay)
            await self.sleep(delay)
            n += 1

    async def storage(self, what: str, fn: Callable[[], T]) -> T:
        """A blocking ``ObjectStore`` call run in a thread, with the same outage handling."""
        return await self.call(what, lambda: asyncio.to_thread(fn))
