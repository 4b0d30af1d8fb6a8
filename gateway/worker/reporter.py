"""How a worker records a job it runs: the manifest in storage (with its owner lease) and the
job's events on NATS, after every change.

Writes wait storage outages out within the outage budget (``save``) or without limit
(``save_final``: a job's end is recorded before its queue message is acknowledged). A job the worker
gives up unfinished (it stops) is written once more with no owner and no lease (``hand_back``), so
that the next worker takes it at once. A job deleted meanwhile (tombstoned) is never written again:
``JobDeleted`` stops its run.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

from ..jobs.events import done_event, progress_event
from ..jobs.manifest import JobManifest, JobState
from ..jobs.manifest_store import ManifestStore
from ..jobs.outage import Backoff, OutagePolicy
from . import metrics

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]


class JobDeleted(Exception):
    """The job was deleted (DELETE reached an API while no worker answered for it)."""


class JobReporter:
    """Writes of one job never overlap; the owner lease is renewed with every write."""

    def __init__(self, manifests: ManifestStore, outage: OutagePolicy, publish: Publish | None,
                 worker_id: str, lease_s: float):
        self.manifests = manifests
        self.outage = outage
        self.publish = publish
        self.worker_id = worker_id
        self.lease_s = lease_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._known_state: dict[str, str] = {}

    def _lock(self, job_id: str) -> asyncio.Lock:
        return self._locks.setdefault(job_id, asyncio.Lock())

    async def _write(self, job: JobManifest) -> None:
        if await self.manifests.is_tombstoned(job.id):
            raise JobDeleted(job.id)
        job.owner = self.worker_id
        job.lease_until = datetime.now(timezone.utc) + timedelta(seconds=self.lease_s)
        await self.manifests.save(job)

    async def save(self, job: JobManifest, stage: str = "", message: str = "") -> None:
        """Persist the manifest (waiting out a storage outage within the budget), then publish a
        progress event, and a done event once the job is finished."""
        async with self._lock(job.id):
            await self.outage.call(f"save manifest of job {job.id}", lambda: self._write(job))
        await self._announce(job, stage, message)

    async def renew(self, job: JobManifest) -> None:
        """Renew the owner lease when no write did lately (heartbeat); errors are the caller's."""
        async with self._lock(job.id):
            if job.state.finished:  # recorded by save_final, which gave the job up
                return
            if job.lease_until is None or job.lease_until - datetime.now(timezone.utc) < timedelta(
                    seconds=self.lease_s * 2 / 3):
                await self._write(job)

    async def save_final(self, job: JobManifest, backoff: Backoff = Backoff(first_s=1.0, cap_s=15.0)) -> None:
        """Persist a finished job, retrying storage outages for as long as it takes (the caller
        keeps the queue message in progress meanwhile); the owner is cleared."""
        n = 0
        while True:
            try:
                async with self._lock(job.id):
                    if await self.manifests.is_tombstoned(job.id):
                        raise JobDeleted(job.id)
                    job.owner, job.lease_until = "", None
                    await self.manifests.save(job)
                break
            except JobDeleted:
                raise
            except Exception as exc:  # noqa: BLE001 - storage down: keep trying, the job is not acked meanwhile
                delay = backoff.delay(n)
                log.warning("could not record the end of job %s (%s); retrying in %.1f s", job.id, exc, delay)
                await asyncio.sleep(delay)
                n += 1
        await self._announce(job, "", job.state.value)

    async def hand_back(self, job: JobManifest, why: str) -> None:
        """Give the unfinished job up: state ``queued``, no owner, no lease. One storage attempt
        (the caller bounds its time); errors, and ``JobDeleted``, are the caller's."""
        async with self._lock(job.id):
            if await self.manifests.is_tombstoned(job.id):
                raise JobDeleted(job.id)
            job.state = JobState.queued
            job.owner, job.lease_until = "", None
            await self.manifests.save(job)
        await self._announce(job, "", why)

    async def _announce(self, job: JobManifest, stage: str, message: str) -> None:
        state = job.state.value
        metrics.record_transition(self._known_state.get(job.id), state)
        self._known_state[job.id] = state
        await self.publish_event(job.id, progress_event(job, stage, message).to_bytes())
        if job.state.finished:
            await self.publish_event(job.id, done_event(job).to_bytes())

    async def publish_event(self, job_id: str, body: bytes) -> None:
        """Events are best effort: a reader that misses one reads the manifest."""
        if self.publish is None:
            return
        try:
            await self.publish(job_id, body)
        except Exception as exc:  # noqa: BLE001
            log.debug("event of job %s not published: %s", job_id, exc)

    def forget(self, job_id: str) -> None:
        self._locks.pop(job_id, None)
        self._known_state.pop(job_id, None)
