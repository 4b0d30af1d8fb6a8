"""The outage helper on its own: which errors are waited out, the capped back-off with jitter, and
the budget measured from the first failure (a fake clock; no real waiting)."""
from __future__ import annotations

import asyncio
import random

import grpc
import pytest
from minio.error import S3Error

from gateway.jobs.outage import Backoff, OutagePolicy, OutageTooLong, is_transient
from services.common.storage import StorageUnavailable


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="boom")


def s3_error(code: str) -> S3Error:
    return S3Error(None, code, "message", "resource", "request", "host")


def test_what_counts_as_an_outage():
    assert is_transient(rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert is_transient(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert not is_transient(rpc_error(grpc.StatusCode.INVALID_ARGUMENT))
    assert not is_transient(rpc_error(grpc.StatusCode.PERMISSION_DENIED))
    assert is_transient(StorageUnavailable("down"))
    assert is_transient(s3_error("InternalError")) and is_transient(s3_error("SlowDown"))
    assert not is_transient(s3_error("AccessDenied")) and not is_transient(ValueError("bug"))


def test_backoff_grows_is_capped_and_jittered():
    plain = Backoff(first_s=0.5, cap_s=10, factor=2, jitter=0)
    assert [plain.delay(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    rng = random.Random(1)
    spread = [Backoff(first_s=4, cap_s=4, jitter=0.25).delay(0, rng) for _ in range(200)]
    assert 3.0 <= min(spread) < 3.3 and 4.7 < max(spread) <= 5.0


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def policy(budget_s: float, time: FakeTime) -> OutagePolicy:
    return OutagePolicy(budget_s, Backoff(first_s=1, cap_s=8, jitter=0), clock=time.clock, sleep=time.sleep)


def flaky(failures: list[BaseException]):
    calls = []

    async def attempt():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"
    return attempt, calls


def test_an_outage_shorter_than_the_budget_is_waited_out():
    time = FakeTime()
    attempt, calls = flaky([rpc_error(grpc.StatusCode.UNAVAILABLE)] * 5)
    assert asyncio.run(policy(60, time).call("pose2d.Estimate", attempt)) == "ok"
    assert len(calls) == 6 and time.slept == [1, 2, 4, 8, 8]


def test_an_outage_past_the_budget_raises_with_the_last_error():
    time = FakeTime()
    attempt, calls = flaky([StorageUnavailable("connection refused")] * 100)
    with pytest.raises(OutageTooLong) as raised:
        asyncio.run(policy(30, time).call("put manifest", attempt))
    assert sum(time.slept) <= 30 and time.now <= 30
    assert isinstance(raised.value.cause, StorageUnavailable) and "connection refused" in str(raised.value)
    assert len(calls) == len(time.slept) + 1


def test_other_errors_are_not_retried():
    time = FakeTime()
    attempt, calls = flaky([rpc_error(grpc.StatusCode.INVALID_ARGUMENT)])
    with pytest.raises(grpc.aio.AioRpcError):
        asyncio.run(policy(60, time).call("decoder.Probe", attempt))
    assert len(calls) == 1 and time.slept == []
