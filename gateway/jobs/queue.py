"""The job queue on NATS JetStream, and the core NATS subjects of one job.

* Stream ``HPE3D_JOBS`` (work-queue retention, file storage) holds one message per job run on
  subject ``hpe3d.jobs.submit.<lane>.<id>``: a ``JobTicket`` (job id, attempt, lane). The lane is
  the job's user (``user_slug``), so that workers can take the users' jobs in turn (fair share,
  ``gateway/worker/lanes.py``). A message leaves the stream when a worker acknowledges it, so
  whether a job is on the queue can be asked by subject.
* One durable pull consumer per lane, ``lane-<lane>``, with explicit acks: every worker replica
  pulls from them, so a message is with one worker at a time. A worker that stops sending
  in-progress acks for ``ack_wait`` seconds (it died) loses it: the message is redelivered to any
  worker, without limit on redeliveries (the worker bounds those of a job it cannot read itself).
  A lane's consumer idle for a day is removed by the server.
* ``hpe3d.jobs.<id>.events``: the worker publishes the job's progress and done events (JSON, see
  ``events.py``); any API replica relays them as Server-Sent Events.
* ``hpe3d.jobs.<id>.cancel``: a request the API sends on DELETE; the worker running the job stops
  it, deletes its objects and replies. No responder means no worker runs it.
"""
from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from .manifest import JobManifest, user_slug

log = logging.getLogger(__name__)

STREAM = "HPE3D_JOBS"
SUBMIT_SUBJECTS = "hpe3d.jobs.submit.*.*"
LANE_CONSUMER_PREFIX = "lane-"
LANE_IDLE_S = 24 * 3600.0   # a lane consumer nobody pulled from for this long is removed by the server
DUPLICATE_WINDOW_S = 120.0  # a re-sent publish of the same job run within this window is dropped
MAX_ACK_PENDING = 10_000    # jobs held by all workers together
NO_USER_LANE = user_slug("")  # the lane of jobs of no one (HPE3D_AUTH=off)


def submit_subject(job_id: str, lane: str = NO_USER_LANE) -> str:
    return f"hpe3d.jobs.submit.{lane}.{job_id}"


def lane_of_subject(subject: str) -> str:
    return subject.split(".")[3]


def lane_consumer(lane: str) -> str:
    return f"{LANE_CONSUMER_PREFIX}{lane}"


def events_subject(job_id: str) -> str:
    return f"hpe3d.jobs.{job_id}.events"


def cancel_subject(job_id: str) -> str:
    return f"hpe3d.jobs.{job_id}.cancel"


@dataclass(frozen=True)
class JobTicket:
    """The queue message of one run of a job; the job itself lives in its manifest."""

    job_id: str
    attempt: int = 1
    lane: str = NO_USER_LANE  # user_slug of the job's user

    @classmethod
    def for_job(cls, job: JobManifest) -> "JobTicket":
        return cls(job.id, job.attempt, user_slug(job.user))

    def to_bytes(self) -> bytes:
        return json.dumps({"job_id": self.job_id, "attempt": self.attempt, "lane": self.lane}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "JobTicket":
        """Raises ``ValueError`` for a message that is not a ticket."""
        try:
            raw = json.loads(data)
            return cls(job_id=str(raw["job_id"]), attempt=int(raw.get("attempt", 1)),
                       lane=str(raw.get("lane", NO_USER_LANE)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a job ticket: {data[:80]!r}") from exc

    @property
    def message_id(self) -> str:
        """JetStream de-duplication id: one message per job run."""
        return f"{self.job_id}.{self.attempt}"


async def connect(url: str, name: str, attempts: int | None = None, wait_s: float = 1.0) -> NATS:
    """Connect to NATS, retrying the first connection (``attempts`` times, None = forever); once
    connected the client reconnects by itself, forever."""
    n = 0
    while True:
        try:
            return await nats.connect(url, name=name, connect_timeout=2, reconnect_time_wait=1,
                                      max_reconnect_attempts=-1, allow_reconnect=True)
        except (OSError, asyncio.TimeoutError, nats.errors.NoServersError) as exc:
            n += 1
            if attempts is not None and n >= attempts:
                raise
            log.warning("NATS at %s not reachable (%s); retrying in %.1f s", url, exc, wait_s)
            await asyncio.sleep(wait_s)


async def ensure_stream(js: JetStreamContext) -> None:
    """Create the job stream, or bring an existing one to this configuration."""
    config = StreamConfig(name=STREAM, subjects=[SUBMIT_SUBJECTS], retention=RetentionPolicy.WORK_QUEUE,
                          storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_S)
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_lane_consumer(js: JetStreamContext, lane: str, ack_wait_s: float) -> None:
    """Create a lane's durable pull consumer (or bring it to this ack wait)."""
    config = ConsumerConfig(durable_name=lane_consumer(lane), ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait_s,
                            max_deliver=-1, max_ack_pending=MAX_ACK_PENDING,
                            filter_subject=submit_subject("*", lane), deliver_policy=DeliverPolicy.ALL,
                            inactive_threshold=LANE_IDLE_S)
    await js.add_consumer(STREAM, config)


async def publish_job(js: JetStreamContext, ticket: JobTicket, timeout_s: float = 5.0) -> int:
    """Put one job run on the queue; returns its stream sequence number."""
    await ensure_stream(js)
    ack = await js.publish(submit_subject(ticket.job_id, ticket.lane), ticket.to_bytes(), timeout=timeout_s,
                           headers={"Nats-Msg-Id": ticket.message_id})
    return ack.seq


async def lanes_with_messages(js: JetStreamContext) -> list[str]:
    """The lanes that hold job runs, waiting or held by a worker (sorted)."""
    info = await js.stream_info(STREAM, subjects_filter=SUBMIT_SUBJECTS)
    return sorted({lane_of_subject(s) for s in (info.state.subjects or {})})


async def is_queued(js: JetStreamContext, job_id: str) -> bool:
    """Whether a run of the job waits on the queue or is held, unacknowledged, by a worker."""
    try:
        info = await js.stream_info(STREAM, subjects_filter=submit_subject(job_id, "*"))
    except NotFoundError:
        return False
    return bool(info.state.subjects)
