"""Workers on a real nats-server and a real SeaweedFS store, with fake stage stubs: the queue hands a
job to one worker, a worker that goes silent loses its job to another which resumes it, DELETE
reaches the worker running the job, and a deleted queued job is cleaned up when it is taken."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid

import pytest

from gateway.api.control import JobControl
from gateway.jobs import queue
from gateway.jobs.events import JobEvent
from gateway.jobs.manifest import JobManifest, JobState, segment_keys, tombstone_key
from gateway.jobs.manifest_store import ManifestStore
from gateway.worker.worker import JobWorker
from tests.integration.test_jobs_pipeline import FakeClients, FakeStages, new_job

ACK_WAIT_S = 2.0


@pytest.fixture
def stream(nats_url):
    """A fresh job stream and consumer for each test (the stream name is fixed, so reset it)."""
    async def reset() -> None:
        nc = await queue.connect(nats_url, "test-reset", attempts=1)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(queue.STREAM)
        await nc.close()
    asyncio.run(reset())
    yield nats_url


def worker_settings(settings, nats_url):
    return dataclasses.replace(settings, nats_url=nats_url, job_ack_wait_s=ACK_WAIT_S, worker_jobs=2,
                               segment_frames=128, stage_concurrency=2, max_duration_s=60, outage_budget_s=5)


class Harness:
    """Workers in this event loop, each with its own NATS connection, and an API-side connection."""

    def __init__(self, settings, store, nats_url):
        self.settings = worker_settings(settings, nats_url)
        self.store = store
        self.nats_url = nats_url
        self.workers: dict[str, tuple[JobWorker, asyncio.Event, asyncio.Task]] = {}
        self.events: dict[str, list[JobEvent]] = {}

    async def __aenter__(self) -> "Harness":
        self.nc = await queue.connect(self.nats_url, "test-api", attempts=1)
        self.js = self.nc.jetstream()
        await queue.ensure_stream(self.js)
        return self

    async def __aexit__(self, *exc) -> None:
        for name in list(self.workers):
            await self.stop(name)
        await self.nc.close()

    async def start(self, name: str, fake: FakeStages) -> JobWorker:
        nc = await queue.connect(self.nats_url, name, attempts=1)
        worker = JobWorker(self.settings, self.store, nc, FakeClients(fake, fake, fake, fake), worker_id=name)
        worker.outage.backoff = dataclasses.replace(worker.outage.backoff, first_s=0.05, cap_s=0.2)
        stop = asyncio.Event()
        self.workers[name] = (worker, stop, asyncio.create_task(worker.run(stop)))
        return worker

    async def stop(self, name: str) -> None:
        worker, stop, task = self.workers.pop(name)
        stop.set()
        await asyncio.wait_for(task, 30)
        await worker.nc.close()

    async def kill(self, name: str) -> None:
        """As kill -9 would: the connection drops, nothing is acknowledged or handed back."""
        worker, _stop, task = self.workers.pop(name)
        await worker.nc.close()
        task.cancel()
        for job_task in list(worker._tasks.values()):
            job_task.cancel()
        await asyncio.gather(task, *worker._tasks.values(), return_exceptions=True)

    async def submit(self, job: JobManifest) -> None:
        self.events[job.id] = []

        async def on_event(msg) -> None:
            self.events[job.id].append(JobEvent.from_bytes(msg.data))
        await self.nc.subscribe(queue.events_subject(job.id), cb=on_event)
        await ManifestStore(self.store).save(job)
        await queue.publish_job(self.js, queue.JobTicket.for_job(job))

    async def wait_done(self, job_id: str, timeout_s: float = 60) -> JobEvent:
        for _ in range(int(timeout_s / 0.1)):
            done = [e for e in self.events[job_id] if e.name == "done"]
            if done:
                return done[-1]
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {self.events[job_id][-3:]}")

    async def queued(self) -> int:
        return (await self.js.stream_info(queue.STREAM)).state.messages


def hanging(fake: FakeStages, method: str) -> asyncio.Event:
    """Make ``method`` of ``fake`` block until the returned event is set."""
    release = asyncio.Event()
    original = getattr(fake, method)

    async def blocked(request, metadata=(), timeout=None):
        fake.calls.append((f"{method}-blocked", dict(metadata).get("x-job-id", "")))
        await release.wait()
        return await original(request, metadata, timeout)

    async def blocked_stream(request, metadata=(), timeout=None):
        fake.calls.append((f"{method}-blocked", dict(metadata).get("x-job-id", "")))
        await release.wait()
        async for update in original(request, metadata, timeout):
            yield update
    setattr(fake, method, blocked_stream if method in ("Lift", "Render") else blocked)
    return release


async def until(condition, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_a_worker_runs_a_queued_job_and_acknowledges_it(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            fake = FakeStages(store)
            await h.start("w1", fake)
            job = new_job(store)
            await h.submit(job)
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.succeeded
            stored = JobManifest.from_json(store.get_bytes(job.key))
            assert stored.state == JobState.succeeded and stored.owner == ""
            assert any(e.name == "progress" and e.payload.stage == "pose2d" for e in h.events[job.id])
            await until(lambda: _eq(h.queued(), 0))  # acknowledged: gone from the work queue
    asyncio.run(scenario())


async def _eq(awaitable, value) -> bool:
    return (await awaitable) == value


def test_a_silent_workers_job_goes_to_another_which_resumes_it(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            first = FakeStages(store, frame_count=300)
            hanging(first, "Lift")  # w1 gets through 2D and hangs in the lifter
            await h.start("w1", first)
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _blocked(first, "Lift"))
            held = JobManifest.from_json(store.get_bytes(job.key))
            assert held.owner == "w1" and held.shown_state() == JobState.running
            await h.kill("w1")
            second = FakeStages(store, frame_count=300)
            await h.start("w2", second)
            done = await h.wait_done(job.id, timeout_s=ACK_WAIT_S * 10)
            assert done.payload.state == JobState.succeeded
            # resumed: w2 found every segment's 2D in storage and only lifted and rendered
            assert [m for m, _ in second.calls if m in ("Decode", "Estimate")] == []
            assert [m for m, _ in second.calls].count("Lift") == 1
            assert all(store.exists(segment_keys(job.id, i)[1]) for i in range(3))
            assert JobManifest.from_json(store.get_bytes(job.key)).state == JobState.succeeded
    asyncio.run(scenario())


async def _blocked(fake: FakeStages, method: str) -> bool:
    return any(m == f"{method}-blocked" for m, _ in fake.calls)


def test_one_job_runs_on_one_worker_at_a_time(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            fakes = [FakeStages(store, frame_count=128), FakeStages(store, frame_count=128)]
            releases = [hanging(f, "Lift") for f in fakes]
            await h.start("w1", fakes[0])
            await h.start("w2", fakes[1])
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _any_blocked(fakes))
            await asyncio.sleep(ACK_WAIT_S * 2.5)  # in-progress acks keep the job with its worker
            assert sum(any(m == "Lift-blocked" for m, _ in f.calls) for f in fakes) == 1
            for release in releases:
                release.set()
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.succeeded
            assert sum(f.calls.count(("Probe", job.id)) for f in fakes) == 1
    asyncio.run(scenario())


async def _any_blocked(fakes) -> bool:
    return any([await _blocked(f, "Lift") for f in fakes])


def test_delete_reaches_the_worker_which_stops_and_removes_everything(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            fake = FakeStages(store, frame_count=128 * 4)
            hanging(fake, "Estimate")
            await h.start("w1", fake)
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _blocked(fake, "Estimate"))
            control = JobControl(ManifestStore(store), lambda: h.nc)
            await control.delete(job.id)
            assert store.list_keys(f"jobs/{job.id}/") == []
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.cancelled
            assert [m for m, _ in fake.calls].count("Lift") == 0
            await until(lambda: _eq(h.queued(), 0))
    asyncio.run(scenario())


def test_a_deleted_queued_job_is_dropped_and_cleaned_when_taken(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            job = new_job(store)
            await h.submit(job)
            await JobControl(ManifestStore(store), lambda: h.nc).delete(job.id)  # no worker yet
            assert store.exists(tombstone_key(job.id))
            store.put_bytes(f"jobs/{job.id}/segments/00000/frames.pb", b"late")  # a late write
            fake = FakeStages(store)
            await h.start("w1", fake)
            await until(lambda: _eq(h.queued(), 0))
            assert fake.calls == [] and store.list_keys(f"jobs/{job.id}/") == []
    asyncio.run(scenario())


def test_a_stopping_worker_hands_its_job_back_at_once(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            first = FakeStages(store, frame_count=128)
            hanging(first, "Render")
            await h.start("w1", first)
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _blocked(first, "Render"))
            await h.stop("w1")  # SIGTERM: nak, no waiting for the ack wait
            second = FakeStages(store, frame_count=128)
            await h.start("w2", second)
            done = await h.wait_done(job.id, timeout_s=ACK_WAIT_S * 5)
            assert done.payload.state == JobState.succeeded
            assert [m for m, _ in second.calls] == ["Probe", "Render"]
    asyncio.run(scenario())


def test_ticket_round_trip_and_bad_messages():
    ticket = queue.JobTicket(uuid.uuid4().hex, 3)
    assert queue.JobTicket.from_bytes(ticket.to_bytes()) == ticket
    assert ticket.message_id.endswith(".3")
    with pytest.raises(ValueError):
        queue.JobTicket.from_bytes(b"not json")


def test_an_unfinished_job_missing_from_the_queue_is_put_back(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            job = new_job(store)
            job.updated_at = job.created_at = job.created_at.replace(year=2020)
            store.put_bytes(job.key, job.to_json())  # stored, never published (its API replica died)
            old = JobManifest.from_json(store.get_bytes(job.key))
            assert old.state == JobState.queued and not await queue.is_queued(h.js, job.id)
            nc = await queue.connect(h.nats_url, "sweeper", attempts=1)
            sweeper = JobWorker(h.settings, store, nc, FakeClients(*[FakeStages(store)] * 4), worker_id="sweeper")
            try:
                assert job.id in await sweeper.requeue_orphans()
                assert await queue.is_queued(h.js, job.id)
                assert job.id not in await sweeper.requeue_orphans()  # on the queue now
            finally:
                await nc.close()
            h.events[job.id] = []

            async def on_event(msg) -> None:
                h.events[job.id].append(JobEvent.from_bytes(msg.data))
            await h.nc.subscribe(queue.events_subject(job.id), cb=on_event)
            await h.start("w1", FakeStages(store))
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.succeeded
    asyncio.run(scenario())


def test_one_users_twenty_jobs_do_not_hold_back_anothers(store, settings, stream):
    """Fair share: twenty jobs of one user wait on the queue before one job of another; a worker that
    runs one job at a time takes the other user's job second, not twenty-first."""
    async def scenario():
        async with Harness(settings, store, stream) as h:
            h.settings = dataclasses.replace(h.settings, worker_jobs=1)
            busy = []
            for _ in range(20):
                job = new_job(store)
                job.user = "key:busy"
                busy.append(job)
                await h.submit(job)
            other = new_job(store)
            other.user = "key:other"
            await h.submit(other)
            fake = FakeStages(store)
            await h.start("w1", fake)
            await h.wait_done(other.id)
            taken = list(dict.fromkeys(job_id for method, job_id in fake.calls if method == "Probe"))
            assert taken.index(other.id) <= 1, f"the other user's job was taken {taken.index(other.id) + 1}th"
            for job in busy[:3]:
                assert (await h.wait_done(job.id)).payload.state == JobState.succeeded
    asyncio.run(scenario())
