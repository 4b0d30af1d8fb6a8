"""The cancellation token the stages' plain functions take (``services.common.cancellation``)."""
from __future__ import annotations

import time

import grpc
import pytest

from services.common.cancellation import NEVER, CallCancelled, CancelToken, call_token
from services.common.errors import status_code_for


def test_each_stops_before_the_next_item_once_cancelled():
    token = CancelToken()
    pulled = []

    def items():
        for i in range(10):
            pulled.append(i)
            yield i
    seen = []
    with pytest.raises(CallCancelled, match="stopping; its work stopped"):
        for item in token.each(items()):
            seen.append(item)
            if item == 2:
                token.cancel("stopping")
    assert seen == [0, 1, 2] and pulled == [0, 1, 2]   # the 4th item was never asked for
    assert status_code_for(CallCancelled("x")) == grpc.StatusCode.CANCELLED


def test_a_passed_deadline_cancels_and_maps_to_deadline_exceeded():
    token = CancelToken(deadline=time.monotonic() + 0.05)
    token.check()
    time.sleep(0.06)
    with pytest.raises(CallCancelled) as caught:
        token.check()
    assert caught.value.deadline_passed
    assert status_code_for(caught.value) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_never_is_never_cancelled():
    assert list(NEVER.each(range(3))) == [0, 1, 2]
    with pytest.raises(RuntimeError):
        NEVER.cancel("no")
    assert not NEVER.cancelled


class _Context:
    """What ``call_token`` asks of a grpc.ServicerContext."""

    def __init__(self, remaining: float, ended: bool = False):
        self.remaining, self.ended, self.callbacks = remaining, ended, []

    def time_remaining(self):
        return self.remaining

    def add_callback(self, callback):
        if self.ended:
            return False
        self.callbacks.append(callback)
        return True


def test_call_token_follows_the_call():
    context = _Context(remaining=1e300)          # no deadline: grpc reports a huge number
    token = call_token(context)
    assert token.deadline is None and not token.cancelled
    for callback in context.callbacks:          # gRPC ends the call (cancelled, or done)
        callback()
    assert token.cancelled
    assert call_token(_Context(remaining=5.0)).deadline == pytest.approx(time.monotonic() + 5.0, abs=0.5)
    assert call_token(_Context(remaining=5.0, ended=True)).cancelled
