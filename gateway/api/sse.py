"""``GET /v1/jobs/{id}/events``: a job's events as Server-Sent Events, on any API replica.

The stream subscribes to the job's NATS events subject first, then reads the manifest, so a late
subscriber starts from the stored state and misses nothing after it. It re-reads the manifest
whenever no event came for ``RECHECK_S`` (NATS away, or a worker that died), so it always ends
with a ``done`` event once the job is finished or deleted. Progress events carry the manifest time
as their id; a client that reconnects with ``Last-Event-ID`` gets the stored state again only if
it changed since.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from nats.aio.client import Client as NATS

from ..jobs import queue
from ..jobs.events import JobEvent, cancelled_event, done_event, progress_event
from ..jobs.manifest_store import ManifestStore

log = logging.getLogger(__name__)

RECHECK_S = 3.0
KEEPALIVE_S = 15.0


def parse_event_id(last_event_id: str | None) -> datetime | None:
    """The manifest time a reconnecting client saw last (its ``Last-Event-ID``); None if unreadable."""
    try:
        return datetime.fromisoformat(last_event_id) if last_event_id else None
    except ValueError:
        return None


async def job_event_stream(job_id: str, manifests: ManifestStore, nc: NATS | None,
                           last_event_id: str | None = None) -> AsyncIterator[str]:
    inbox: asyncio.Queue[JobEvent] = asyncio.Queue()
    sub = None
    if nc is not None and nc.is_connected:
        async def on_event(msg) -> None:
            try:
                inbox.put_nowait(JobEvent.from_bytes(msg.data))
            except ValueError as exc:
                log.warning("ignoring a malformed event of job %s: %s", job_id, exc)
        with contextlib.suppress(Exception):
            sub = await nc.subscribe(queue.events_subject(job_id), cb=on_event)
    try:
        last_update = parse_event_id(last_event_id)  # a reconnecting client is not told again what it saw
        idle = 0.0
        while True:
            try:
                job = await manifests.load(job_id)
            except Exception as exc:  # noqa: BLE001 - storage down: keep the stream, look again later
                log.warning("events of job %s: manifest unreadable (%s)", job_id, exc)
                yield ": storage unavailable, retrying\n\n"
                await asyncio.sleep(RECHECK_S)
                continue
            if job is None:
                yield cancelled_event(job_id).sse()
                return
            if job.updated_at != last_update:
                last_update = job.updated_at
                yield progress_event(job).sse()
            if job.state.finished:
                yield done_event(job).sse()
                return
            # relay events until none comes for RECHECK_S, then look at the manifest again
            while True:
                try:
                    event = await asyncio.wait_for(inbox.get(), RECHECK_S)
                except asyncio.TimeoutError:
                    idle += RECHECK_S
                    if idle >= KEEPALIVE_S:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    break
                idle = 0.0
                yield event.sse()
                if event.name == "done":
                    return
                if getattr(event.payload, "updated_at", None) is not None:
                    last_update = event.payload.updated_at
    finally:
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
