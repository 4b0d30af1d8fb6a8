"""A job worker: takes job runs off the NATS queue and runs them, ``HPE3D_WORKER_JOBS`` at a time.

The worker takes one message at a time from the users' lanes in turn (``lanes.py``: fair share).
For each queue message the worker

1. reads the manifest; a job that is gone or tombstoned (deleted) has its leftovers removed and
   the message acknowledged; a finished job's message (a duplicate) is acknowledged; a job whose
   manifest names another owner with a live lease is handed back (that owner still works on it);
2. listens on ``hpe3d.jobs.<id>.cancel``, records itself as the owner and runs the pipeline,
   sending an in-progress acknowledgement every ``ack_wait / 3`` seconds and renewing its lease
   in the manifest;
3. acknowledges the message only when the job is finished (its end recorded in storage, however
   long storage takes to come back), or cancelled (its objects deleted). When the worker stops, it
   gives its messages back (nak) so that another worker resumes them at once.

Every minute a worker also removes what late writes left under deleted jobs, deletes the jobs past
their retention (HPE3D_RETENTION_DAYS, ``gateway/jobs/retention.py``), and puts back on the
queue any unfinished job that has no live owner and no queue message (an API replica that died
between storing a job and publishing it, or a queue that lost its store).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common.logs import job_id_var
from services.common.settings import Settings
from services.common.storage import ObjectStore

from ..jobs import queue
from ..jobs.events import cancelled_event
from ..jobs.manifest import JobState, is_job_id
from ..jobs.manifest_store import ManifestStore
from ..jobs.outage import OutagePolicy
from ..jobs.retention import delete_expired
from ..jobs.stages import StageClients
from . import metrics
from .lanes import FairTaker
from .pipeline import JobPipeline
from .reporter import JobDeleted, JobReporter

log = logging.getLogger(__name__)

CANCEL = "job cancelled"     # cancel message of a job task: DELETE asked for it
SHUTDOWN = "worker stopping"  # cancel message of a job task: give the job back to the queue
FETCH_WAIT_S = 2.0
SWEEP_EVERY_S = 60.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobWorker:
    """One worker process's loop; ``run`` until ``stop`` is set."""

    def __init__(self, settings: Settings, store: ObjectStore, nc: NATS, clients: StageClients,
                 worker_id: str | None = None):
        self.settings = settings
        self.store = store
        self.nc = nc
        self.js = nc.jetstream()
        self.clients = clients
        self.worker_id = worker_id or new_worker_id()
        self.manifests = ManifestStore(store)
        self.outage = OutagePolicy(settings.outage_budget_s)
        self.reporter = JobReporter(self.manifests, self.outage, self._publish, self.worker_id,
                                    lease_s=settings.job_ack_wait_s)
        self.pipeline = JobPipeline(settings, store, clients, self.reporter, self.outage)
        self._tasks: dict[str, asyncio.Task] = {}

    async def _publish(self, job_id: str, body: bytes) -> None:
        await self.nc.publish(queue.events_subject(job_id), body)

    @property
    def running(self) -> list[str]:
        return list(self._tasks)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        await self._setup_queue(stop)
        if stop.is_set():
            return
        taker = FairTaker(self.js, self.settings.job_ack_wait_s)
        slots = asyncio.Semaphore(max(1, self.settings.worker_jobs))
        sweeper = asyncio.create_task(self._sweep_forever())
        handlers: set[asyncio.Task] = set()
        log.info("worker %s taking jobs (%d at a time)", self.worker_id, self.settings.worker_jobs)
        try:
            while not stop.is_set():
                if not await _acquire_unless_stopped(slots, stop):
                    break
                try:
                    msg = await taker.take(FETCH_WAIT_S)
                    msgs = [msg] if msg is not None else []
                except asyncio.TimeoutError:
                    slots.release()
                    continue
                except Exception as exc:  # noqa: BLE001 - NATS away: the client reconnects by itself
                    slots.release()
                    if asyncio.current_task().cancelling():  # nats-py turns a cancel into an error
                        raise asyncio.CancelledError() from exc
                    if self.nc.is_closed:
                        log.error("the NATS connection is closed; the worker stops taking jobs")
                        break
                    log.warning("fetching from the job queue failed: %s", exc)
                    await asyncio.sleep(1.0)
                    continue
                if not msgs:
                    slots.release()
                for msg in msgs[:1]:  # a batch of one: one slot, one message
                    task = asyncio.create_task(self._handle(msg))
                    handlers.add(task)
                    task.add_done_callback(lambda t: (handlers.discard(t), slots.release()))
        finally:
            sweeper.cancel()
            for task in list(self._tasks.values()):
                task.cancel(SHUTDOWN)
            await asyncio.gather(*handlers, sweeper, return_exceptions=True)
            with contextlib.suppress(Exception):
                await taker.close()

    async def _setup_queue(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await queue.ensure_stream(self.js)
                return
            except Exception as exc:  # noqa: BLE001 - JetStream not ready yet
                log.warning("job queue not ready (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _sweep_forever(self) -> None:
        keep = timedelta(seconds=self.settings.stage_timeout_s + 3600)
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                removed = await self.manifests.sweep_tombstones(keep)
                if removed:
                    log.info("removed %d objects written late under deleted jobs", removed)
                await delete_expired(self.manifests, self.settings.retention_days)
                await self.requeue_orphans()
            except Exception as exc:  # noqa: BLE001 - storage or NATS down: next round
                log.warning("sweep failed: %s", exc)

    async def requeue_orphans(self) -> list[str]:
        """Publish a new ticket for every unfinished job that has neither a live owner nor a queue
        message, once it has been quiet for two ack waits. Returns their ids. A ticket too many is
        harmless: the worker that takes it finds the job finished or held and lets it go."""
        now = datetime.now(timezone.utc)
        quiet = timedelta(seconds=2 * self.settings.job_ack_wait_s)
        requeued = []
        for job in await self.manifests.load_all():
            if job.state not in (JobState.queued, JobState.running) or job.owner_alive(now):
                continue
            if now - job.updated_at < quiet or await queue.is_queued(self.js, job.id):
                continue
            await queue.publish_job(self.js, queue.JobTicket.for_job(job))
            log.warning("job %s was %s with no worker and no queue message: put back on the queue",
                        job.id, job.shown_state(now).value)
            requeued.append(job.id)
        return requeued

    # -- one message --------------------------------------------------------------------------
    async def _handle(self, msg: Msg) -> None:
        try:
            ticket = queue.JobTicket.from_bytes(msg.data)
        except ValueError as exc:
            log.error("dropping a queue message: %s", exc)
            await msg.term()
            return
        if not is_job_id(ticket.job_id):
            log.error("dropping a ticket for %r: not a job id", ticket.job_id)
            await msg.term()
            return
        token = job_id_var.set(ticket.job_id)
        heartbeat = asyncio.create_task(self._in_progress(msg))
        try:
            outcome = await self._take(msg, ticket)
        except Exception:  # noqa: BLE001 - storage down before the job started: let it come back
            log.exception("could not take job %s; handing it back", ticket.job_id)
            outcome = "nak"
        finally:
            heartbeat.cancel()
            job_id_var.reset(token)
        try:
            if outcome == "ack":
                await msg.ack()
            elif outcome == "nak":
                await msg.nak(delay=1.0)
            elif outcome == "later":
                await msg.nak(delay=self.settings.job_ack_wait_s)
        except Exception as exc:  # noqa: BLE001 - NATS away: the message comes back after the ack wait
            log.warning("could not settle the queue message of job %s: %s", ticket.job_id, exc)

    async def _in_progress(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.settings.job_ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _take(self, msg: Msg, ticket: queue.JobTicket) -> str:
        """Run the job of ``ticket``; returns how to settle its message: ack, nak or later."""
        job_id = ticket.job_id
        cancel_requests: list[Msg] = []

        async def on_cancel(request: Msg) -> None:
            cancel_requests.append(request)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel(CANCEL)

        cancel_sub = await self.nc.subscribe(queue.cancel_subject(job_id), cb=on_cancel)
        try:
            job = await self.outage.call(f"read manifest of job {job_id}", lambda: self.manifests.load(job_id))
            if job is None or await self.manifests.is_tombstoned(job_id):
                log.info("job %s was deleted; removing what is left of it", job_id)
                await self.manifests.delete_objects(job_id)
                return "ack"
            if job.state.finished:
                return "ack"
            if job.owner and job.owner != self.worker_id and job.owner_alive():
                log.warning("job %s is still held by worker %s; handing it back", job_id, job.owner)
                return "later"
            if msg.metadata.num_delivered > 1:
                log.info("resuming job %s (delivery %d)", job_id, msg.metadata.num_delivered)
            task = asyncio.create_task(self.pipeline.run(job), name=f"job-{job_id}")
            self._tasks[job_id] = task
            metrics.JOBS_RUNNING.inc()
            lease = asyncio.create_task(self._renew_lease(job, task))
            try:
                if cancel_requests:
                    task.cancel(CANCEL)
                await task
                return "ack"
            except asyncio.CancelledError:
                if not task.cancelled():  # this handler itself is being cancelled
                    raise
                if not cancel_requests:  # the worker stops: give the job back to the queue
                    return "nak"
                await self._delete_cancelled(job_id, cancel_requests)
                return "ack"
            except JobDeleted:
                await self._delete_cancelled(job_id, cancel_requests)
                return "ack"
            finally:
                lease.cancel()
                self._tasks.pop(job_id, None)
                self.reporter.forget(job_id)
                metrics.JOBS_RUNNING.dec()
        finally:
            with contextlib.suppress(Exception):
                await cancel_sub.unsubscribe()
            # a DELETE that came while the job was ending here: the API need not wait, it deletes the job itself
            for request in cancel_requests:
                if request.reply:
                    with contextlib.suppress(Exception):
                        await request.respond(b'{"cancelled": false}')

    async def _renew_lease(self, job, task: asyncio.Task) -> None:
        while not task.done():
            await asyncio.sleep(self.settings.job_ack_wait_s / 3)
            try:
                await self.reporter.renew(job)
            except JobDeleted:
                task.cancel(SHUTDOWN)  # redelivered at once, then seen as deleted and cleaned up
            except Exception as exc:  # noqa: BLE001 - storage down: the pipeline's own writes wait it out
                log.warning("could not renew the lease of job %s: %s", job.id, exc)

    async def _delete_cancelled(self, job_id: str, cancel_requests: list[Msg]) -> None:
        """After a cancelled run: delete the job's objects, tell its watchers and the API."""
        await self.outage.call(f"delete job {job_id}", lambda: self.manifests.delete_job(job_id))
        log.info("job %s cancelled and deleted", job_id)
        await self.reporter.publish_event(job_id, cancelled_event(job_id).to_bytes())
        for request in cancel_requests:
            if request.reply:
                with contextlib.suppress(Exception):
                    await request.respond(b'{"cancelled": true}')
        cancel_requests.clear()


async def _acquire_unless_stopped(slots: asyncio.Semaphore, stop: asyncio.Event) -> bool:
    """Take a job slot; False (and no slot) when ``stop`` is set first."""
    acquire = asyncio.ensure_future(slots.acquire())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not acquire.done():
            acquire.cancel()
    if acquire.done() and not acquire.cancelled():
        if stop.is_set():
            slots.release()
            return False
        return True
    return False
