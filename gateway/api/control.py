"""What an API replica does to jobs: queue a new or retried run, cancel and delete, read state.

Nothing here lives only in this process: the manifests in storage are the state, the JetStream
queue carries job runs to the workers and core NATS carries cancellations, so any replica can
answer for any job.
"""
from __future__ import annotations

import asyncio
import json
import logging

import nats.errors
from nats.aio.client import Client as NATS

from ..jobs import queue
from ..jobs.manifest import JobManifest, JobState
from ..jobs.manifest_store import ManifestStore
from . import metrics

log = logging.getLogger(__name__)

CANCEL_WAIT_S = 15.0  # how long a DELETE waits for the worker running the job to stop it and clean up


class QueueUnavailable(RuntimeError):
    """NATS (the job queue) cannot be reached: answered 503."""


class NotRetryable(RuntimeError):
    """Retry asked for a job that has not failed: answered 409."""


class JobControl:
    def __init__(self, manifests: ManifestStore, nc_provider):
        """``nc_provider()`` returns the connected NATS client, or None while there is none."""
        self.manifests = manifests
        self._nc = nc_provider

    def require_queue(self) -> None:
        """Raise ``QueueUnavailable`` now rather than after receiving an upload."""
        self._connected()

    def _connected(self) -> NATS:
        nc = self._nc()
        if nc is None:
            raise QueueUnavailable("the job queue (NATS) is not reachable; try again shortly")
        return nc

    async def enqueue(self, job: JobManifest) -> None:
        """Put a run of ``job`` (already saved as queued) on the queue."""
        nc = self._connected()
        try:
            await queue.publish_job(nc.jetstream(), queue.JobTicket.for_job(job))
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as exc:
            raise QueueUnavailable(f"the job queue (NATS) did not take the job: {exc}") from exc
        metrics.JOBS_SUBMITTED.inc()

    async def retry(self, job: JobManifest) -> JobManifest:
        """Queue another run of a failed job; it resumes from what its last run left."""
        if job.state != JobState.failed:
            raise NotRetryable(f"job {job.id} is {job.shown_state().value}; only a failed job can be retried")
        self._connected()
        error = job.error
        job.state, job.error = JobState.queued, None
        job.attempt += 1
        job.owner, job.lease_until = "", None
        await self.manifests.save(job)
        try:
            await self.enqueue(job)
        except QueueUnavailable:
            job.state, job.error, job.attempt = JobState.failed, error, job.attempt - 1
            await self.manifests.save(job)
            raise
        return job

    async def delete(self, job_id: str, finished: bool = False) -> None:
        """Stop the job's stage work and delete all its objects and index entries.

        The worker running the job (if any) answers the cancel request after it has stopped and
        deleted the objects. Without an answer, this replica deletes the objects itself, and
        tombstones an unfinished job first: a worker that takes it later, or a stage call that
        writes late, is cleaned up because of the tombstone. A finished job runs nowhere, so it
        leaves nothing behind, not even a tombstone (``finished``: the job's state says so)."""
        nc = self._nc()
        if nc is not None:
            try:
                reply = await nc.request(queue.cancel_subject(job_id), b"{}", timeout=CANCEL_WAIT_S)
                if json.loads(reply.data or b"{}").get("cancelled"):
                    return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError, asyncio.TimeoutError):
                pass  # no worker runs the job (or it did not answer in time): delete it here
            except nats.errors.Error as exc:
                log.warning("cancel request for job %s failed: %s", job_id, exc)
        await self.manifests.delete_job(job_id, tombstone=not finished)
