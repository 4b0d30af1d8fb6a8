"""Taking job runs off the queue fairly: each user's jobs wait in a lane of their own (a NATS subject
``hpe3d.jobs.submit.<lane>.*`` and its durable consumer, ``gateway/jobs/queue.py``), and a worker
takes one job from each lane in turn, so that twenty jobs of one user do not hold back another
user's single job: it is the next one a worker takes.

Each round asks the stream which lanes hold messages (waiting, or held by a worker: a dead worker's
job comes back on its lane) and pulls one message from the lane after the one served last, then
the next lane, until one answers.
"""
from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ..jobs import queue

log = logging.getLogger(__name__)

LANE_WAIT_S = 0.1   # how long one lane's pull waits for a message
IDLE_WAIT_S = 0.25  # how long to wait before asking again when no lane holds a message


class FairTaker:
    def __init__(self, js: JetStreamContext, ack_wait_s: float):
        self.js = js
        self.ack_wait_s = ack_wait_s
        self._subs: dict[str, JetStreamContext.PullSubscription] = {}
        self._last = ""

    async def _subscription(self, lane: str) -> JetStreamContext.PullSubscription:
        sub = self._subs.get(lane)
        if sub is None:
            await queue.ensure_lane_consumer(self.js, lane, self.ack_wait_s)
            sub = await self.js.pull_subscribe_bind(queue.lane_consumer(lane), queue.STREAM)
            self._subs[lane] = sub
        return sub

    async def take(self, wait_s: float) -> Msg | None:
        """The next job run, taking the lanes in turn; None when none came within about ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            lanes = await queue.lanes_with_messages(self.js)
            order = [lane for lane in lanes if lane > self._last] + [lane for lane in lanes if lane <= self._last]
            for lane in order:
                try:
                    msgs = await (await self._subscription(lane)).fetch(1, timeout=LANE_WAIT_S)
                except (asyncio.TimeoutError, nats.errors.TimeoutError):
                    continue
                except NotFoundError:  # the lane's consumer was removed (idle): made again next round
                    self._forget(lane)
                    continue
                if msgs:
                    self._last = lane
                    return msgs[0]
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(IDLE_WAIT_S if not lanes else 0)

    def _forget(self, lane: str) -> None:
        sub = self._subs.pop(lane, None)
        if sub is not None:
            asyncio.ensure_future(_quietly_unsubscribe(sub))

    async def close(self) -> None:
        for lane in list(self._subs):
            sub = self._subs.pop(lane)
            await _quietly_unsubscribe(sub)


async def _quietly_unsubscribe(sub) -> None:
    try:
        await sub.unsubscribe()
    except Exception as exc:  # noqa: BLE001 - the connection is going anyway
        log.debug("unsubscribing a lane: %s", exc)
