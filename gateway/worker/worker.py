"""A job worker: takes job runs off the NATS queue and runs them, ``HPE3D_WORKER_JOBS`` at a time.

The worker takes one message at a time from the users' lanes in turn (``lanes.py``: fair share).
For each queue message the worker

1. refuses a second delivery of a job this process already runs: the queue's redelivery of the same
   message joins the run in progress (acknowledged in progress, settled when the run ends), another
   message for the job is terminated;
2. reads the manifest; a job that is gone or tombstoned (deleted) has its leftovers removed and
   the message acknowledged; a finished job's message (a duplicate) is acknowledged; a job whose
   manifest names another owner with a live lease is handed back until that lease runs out; a
   manifest that fails validation is read again on a few later deliveries, then the job is failed
   with the reason;
3. listens on ``hpe3d.jobs.<id>.cancel``, records itself as the owner and runs the pipeline,
   sending an in-progress acknowledgement every ``ack_wait / 3`` seconds and renewing its lease
   (``ack_wait`` long) in the manifest;
4. acknowledges the message only when the job is finished (its end recorded in storage, however
   long storage takes to come back), or cancelled (its objects deleted).

When the worker stops (SIGTERM), its jobs finish the steps in flight (for up to
``HAND_BACK_GRACE_S``), each is recorded with no owner and no lease, and its message is given back
(nak, no delay): another worker resumes it from its manifest at once.

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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.common.logs import job_id_var
from services.common.settings import Settings
from services.common.storage import ObjectStore

from ..jobs import queue
from ..jobs.events import cancelled_event, done_event
from ..jobs.manifest import InvalidManifest, JobManifest, JobState, is_job_id
from ..jobs.manifest_store import ManifestStore
from ..jobs.outage import OutagePolicy
from ..jobs.retention import delete_expired
from ..jobs.stages import StageClients
from . import metrics
from .lanes import FairTaker
from .pipeline import JobHandedBack, JobPipeline
from .reporter import JobDeleted, JobReporter

log = logging.getLogger(__name__)

CANCEL = "job cancelled"     # cancel message of a job task: DELETE asked for it
SHUTDOWN = "worker stopping"  # cancel message of a job task: the hand-back grace ran out
FETCH_WAIT_S = 2.0
SWEEP_EVERY_S = 60.0
# On SIGTERM, how long jobs may take to finish the steps in flight before they are stopped where they
# are; below the local stack's 20 s and the worker Deployment's 45 s between SIGTERM and SIGKILL.
HAND_BACK_GRACE_S = 15.0
HAND_BACK_WRITE_S = 5.0   # the most a stopping worker waits for storage to record a hand-back
LEASE_MARGIN_S = 0.5      # a job held by another worker is offered again this long after its lease ends


@dataclass(frozen=True)
class Settlement:
    """How a queue message is settled: acknowledged, or given back (nak) to be delivered again after
    ``delay_s`` (None: at once)."""

    ack: bool
    delay_s: float | None = None


ACK = Settlement(ack=True)
NAK_NOW = Settlement(ack=False)


@dataclass
class Claim:
    """A job this process runs: the stream sequence of its queue message and the latest delivery of
    that message (the one acknowledged)."""

    stream_seq: int
    msg: Msg


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobWorker:
    """One worker process's loop; ``run`` until ``stop`` is set."""

    # Delays before a manifest that failed validation is read again; the job fails on the delivery after.
    invalid_manifest_retries_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

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
        self.stopping = asyncio.Event()
        self.pipeline = JobPipeline(settings, store, clients, self.reporter, self.outage, self.stopping)
        self._claims: dict[str, Claim] = {}
        self._tasks: dict[str, asyncio.Task] = {}

    async def _publish(self, job_id: str, body: bytes) -> None:
        await self.nc.publish(queue.events_subject(job_id), body)

    @property
    def running(self) -> list[str]:
        return list(self._tasks)

    # -- the loop -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Take jobs until ``stop`` is set, then hand the running ones back (``_hand_back_all``).
        Cancelled instead (as the process dying would), it settles nothing and writes nothing."""
        await self._setup_queue(stop)
        if stop.is_set():
            return
        taker = FairTaker(self.js, self.settings.job_ack_wait_s)
        slots = asyncio.Semaphore(max(1, self.settings.worker_jobs))
        sweeper = asyncio.create_task(self._sweep_forever())
        stop_watch = asyncio.create_task(self._stop_jobs_when(stop))
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
            await self._hand_back_all(handlers)
        finally:
            sweeper.cancel()
            stop_watch.cancel()
            for handler in list(handlers):  # left only when run() itself is cancelled
                handler.cancel()
            await asyncio.gather(*handlers, sweeper, stop_watch, return_exceptions=True)
            with contextlib.suppress(Exception):
                await taker.close()

    async def _stop_jobs_when(self, stop: asyncio.Event) -> None:
        """From the moment ``stop`` is set, jobs start no new step (``JobPipeline.stopping``)."""
        await stop.wait()
        if self._tasks:
            log.info("stopping: %d job(s) finish the steps in flight, then go back to the queue", len(self._tasks))
        self.stopping.set()

    async def _hand_back_all(self, handlers: set[asyncio.Task]) -> None:
        """The worker stops: every job finishes the steps in flight and goes back to the queue; a
        job still in a stage call after ``HAND_BACK_GRACE_S`` is stopped there and handed back."""
        self.stopping.set()
        if not handlers:
            return
        _done, pending = await asyncio.wait(set(handlers), timeout=HAND_BACK_GRACE_S)
        if pending:
            log.warning("stopping: %d job(s) still in a stage call after %.0f s; stopping them there",
                        len(self._tasks), HAND_BACK_GRACE_S)
            for task in list(self._tasks.values()):
                task.cancel(SHUTDOWN)
            await asyncio.wait(pending, timeout=HAND_BACK_WRITE_S + 5.0)

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
        if await self._joined_run_in_progress(ticket.job_id, msg):
            return
        claim = self._claims[ticket.job_id] = Claim(msg.metadata.sequence.stream, msg)
        token = job_id_var.set(ticket.job_id)
        heartbeat = asyncio.create_task(self._in_progress(claim))
        try:
            settlement = await self._take(claim, ticket)
        except Exception:  # noqa: BLE001 - storage down past the budget, or a bug: let it come back later
            log.exception("could not take job %s; handing it back", ticket.job_id)
            delay_s = min(self.settings.job_ack_wait_s, 2.0 ** min(msg.metadata.num_delivered, 5))
            settlement = Settlement(ack=False, delay_s=delay_s)
        finally:
            heartbeat.cancel()
            job_id_var.reset(token)
            self._claims.pop(ticket.job_id, None)
        try:
            await _settle(claim.msg, settlement)
        except Exception as exc:  # noqa: BLE001 - NATS away: the message comes back after the ack wait
            log.warning("could not settle the queue message of job %s: %s", ticket.job_id, exc)

    async def _joined_run_in_progress(self, job_id: str, msg: Msg) -> bool:
        """Whether this process already runs ``job_id``: the queue's redelivery of that run's message
        (its in-progress acknowledgements did not arrive in time) becomes the delivery the run
        acknowledges; any other message for the job is terminated. Either way no second run starts."""
        claim = self._claims.get(job_id)
        if claim is None:
            return False
        try:
            if msg.metadata.sequence.stream == claim.stream_seq:
                log.warning("the queue delivered job %s again (delivery %d) while this worker runs it; "
                            "the run in progress keeps it", job_id, msg.metadata.num_delivered)
                claim.msg = msg
                await msg.in_progress()
            else:
                log.warning("dropping a second queue message for job %s, which this worker runs", job_id)
                await msg.term()
        except Exception as exc:  # noqa: BLE001 - NATS away: the message comes back after the ack wait
            log.warning("could not settle a second delivery of job %s: %s", job_id, exc)
        return True

    async def _in_progress(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self.settings.job_ack_wait_s / 3)
            with contextlib.suppress(Exception):
                await claim.msg.in_progress()

    async def _take(self, claim: Claim, ticket: queue.JobTicket) -> Settlement:
        """Run the job of ``ticket``; returns how to settle its message."""
        job_id = ticket.job_id
        cancel_requests: list[Msg] = []

        async def on_cancel(request: Msg) -> None:
            cancel_requests.append(request)
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel(CANCEL)

        cancel_sub = await self.nc.subscribe(queue.cancel_subject(job_id), cb=on_cancel)
        try:
            try:
                job = await self.outage.call(f"read manifest of job {job_id}",
                                             lambda: self.manifests.load_valid(job_id))
            except InvalidManifest as invalid:
                return await self._invalid_manifest(claim.msg, invalid)
            if job is None or await self.manifests.is_tombstoned(job_id):
                log.info("job %s was deleted; removing what is left of it", job_id)
                await self.manifests.delete_objects(job_id)
                return ACK
            if job.state.finished:
                return ACK
            if job.owner and job.owner != self.worker_id and job.owner_alive():
                wait_s = self._until_lease_ends(job)
                log.warning("job %s is held by worker %s for %.1f s more; offered again then", job_id, job.owner,
                            wait_s)
                return Settlement(ack=False, delay_s=wait_s)
            if claim.msg.metadata.num_delivered > 1:
                log.info("resuming job %s (delivery %d)", job_id, claim.msg.metadata.num_delivered)
            return await self._run(job, cancel_requests)
        finally:
            with contextlib.suppress(Exception):
                await cancel_sub.unsubscribe()
            # a DELETE that came while the job was ending here: the API need not wait, it deletes the job itself
            for request in cancel_requests:
                if request.reply:
                    with contextlib.suppress(Exception):
                        await request.respond(b'{"cancelled": false}')

    async def _run(self, job: JobManifest, cancel_requests: list[Msg]) -> Settlement:
        task = asyncio.create_task(self.pipeline.run(job), name=f"job-{job.id}")
        self._tasks[job.id] = task
        metrics.JOBS_RUNNING.inc()
        lease = asyncio.create_task(self._renew_lease(job, task))
        try:
            if cancel_requests:
                task.cancel(CANCEL)
            try:
                await task
            finally:  # no lease renewal may follow a hand-back
                lease.cancel()
                await asyncio.gather(lease, return_exceptions=True)
            return ACK
        except asyncio.CancelledError:
            if not task.cancelled():  # this handler itself is being cancelled
                raise
            if cancel_requests:
                await self._delete_cancelled(job.id, cancel_requests)
                return ACK
            await self._hand_back(job, "the worker stopped in the middle of a stage call")  # the grace ran out
            return NAK_NOW
        except JobHandedBack as stopped:
            await self._hand_back(job, str(stopped))
            return NAK_NOW
        except JobDeleted:
            await self._delete_cancelled(job.id, cancel_requests)
            return ACK
        finally:
            self._tasks.pop(job.id, None)
            self.reporter.forget(job.id)
            metrics.JOBS_RUNNING.dec()

    def _until_lease_ends(self, job: JobManifest) -> float:
        """Seconds until another owner's lease ends (plus a margin), at most one ack wait: a worker
        that died is known gone then, and the job is offered again."""
        left = (job.lease_until - datetime.now(timezone.utc)).total_seconds() if job.lease_until else 0.0
        return min(max(left, 0.0) + LEASE_MARGIN_S, self.settings.job_ack_wait_s)

    async def _hand_back(self, job: JobManifest, why: str) -> None:
        """Record the unfinished job with no owner and no lease; when storage does not answer in
        time, the next worker waits for the lease to run out instead."""
        try:
            await asyncio.wait_for(self.reporter.hand_back(job, f"handed back to the queue: {why}"), HAND_BACK_WRITE_S)
            log.info("job %s handed back to the queue (%s)", job.id, why)
        except JobDeleted:
            log.info("job %s was deleted while it was handed back", job.id)
        except Exception as exc:  # noqa: BLE001 - storage away: the lease runs out by itself
            log.warning("could not clear the lease of job %s (%s); another worker takes it when the lease ends",
                        job.id, exc)

    async def _invalid_manifest(self, msg: Msg, invalid: InvalidManifest) -> Settlement:
        """A manifest that fails validation: read again on the next few deliveries (a newer worker
        may read it), then the job fails with the reason (what was stored is kept beside it)."""
        if await self.manifests.is_tombstoned(invalid.job_id):
            await self.manifests.delete_objects(invalid.job_id)
            return ACK
        delivery = msg.metadata.num_delivered
        retries = self.invalid_manifest_retries_s
        if delivery <= len(retries):
            log.warning("%s (delivery %d of %d; read again in %.0f s)", invalid, delivery, len(retries) + 1,
                        retries[delivery - 1])
            return Settlement(ack=False, delay_s=retries[delivery - 1])
        job = await self.outage.call(f"fail job {invalid.job_id}", lambda: self.manifests.replace_invalid(invalid))
        log.error("job %s failed: %s (delivery %d)", job.id, job.error.message, delivery)
        metrics.record_transition(None, job.state.value)
        await self.reporter.publish_event(job.id, done_event(job).to_bytes())
        return ACK

    async def _renew_lease(self, job: JobManifest, task: asyncio.Task) -> None:
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


async def _settle(msg: Msg, settlement: Settlement) -> None:
    if settlement.ack:
        await msg.ack()
    else:
        await msg.nak(delay=settlement.delay_s)


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
