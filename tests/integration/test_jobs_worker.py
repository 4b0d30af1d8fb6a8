"""Workers on a real nats-server and a real SeaweedFS store, with fake stage stubs: the queue hands a
job to one worker, a worker that dies loses its job to another which resumes it within the ack wait,
a worker stopped with SIGTERM finishes the steps in flight and hands its job to another at once, a
worker never runs one job twice, DELETE reaches the worker running the job, a deleted queued job is
cleaned up when it is taken, and a job whose manifest fails validation fails with the reason."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid

import pytest

from gateway.api.control import JobControl
from gateway.jobs import queue
from gateway.jobs.events import JobEvent
from gateway.jobs.manifest import JobManifest, JobState, segment_keys, tombstone_key
from gateway.jobs.manifest_store import ManifestStore
from gateway.worker import worker as worker_module
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


def worker_settings(settings, nats_url, ack_wait_s: float = ACK_WAIT_S):
    return dataclasses.replace(settings, nats_url=nats_url, job_ack_wait_s=ack_wait_s, worker_jobs=2,
                               segment_frames=128, stage_concurrency=2, max_duration_s=60, outage_budget_s=5)


class Harness:
    """Workers in this event loop, each with its own NATS connection, and an API-side connection."""

    def __init__(self, settings, store, nats_url, ack_wait_s: float = ACK_WAIT_S):
        self.settings = worker_settings(settings, nats_url, ack_wait_s)
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

    async def listen(self, job_id: str) -> None:
        """Collect the job's events in ``events[job_id]``."""
        self.events[job_id] = []

        async def on_event(msg) -> None:
            self.events[job_id].append(JobEvent.from_bytes(msg.data))
        await self.nc.subscribe(queue.events_subject(job_id), cb=on_event)

    async def submit(self, job: JobManifest) -> None:
        await self.listen(job.id)
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

    async def redeliveries(self) -> int:
        total = 0
        for lane in await queue.lanes_with_messages(self.js):   # one consumer per user's lane
            total += (await self.js.consumer_info(queue.STREAM, queue.lane_consumer(lane))).num_redelivered
        return total


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


# A longer ack wait than the other tests. The worker dies just after renewing its lease, so the lease
# outlives the queue's redelivery by up to a third of the ack wait: the job must still be resumed within
# the ack wait (plus a margin for the fetch), not after the lease and then a whole ack wait more.
KILL_ACK_WAIT_S = 9.0
KILL_RESUME_MARGIN_S = 3.0


def test_a_killed_workers_job_goes_to_another_within_the_ack_wait(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream, ack_wait_s=KILL_ACK_WAIT_S) as h:
            first = FakeStages(store, frame_count=300)
            hanging(first, "Lift")  # w1 gets through 2D and hangs in the lifter
            await h.start("w1", first)
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _blocked(first, "Lift"))
            held = JobManifest.from_json(store.get_bytes(job.key))
            assert held.owner == "w1" and held.shown_state() == JobState.running
            second = FakeStages(store, frame_count=300)
            await h.start("w2", second)  # waits on the queue
            await lease_renewed(store, job.id, timeout_s=KILL_ACK_WAIT_S)
            killed_at = time.monotonic()
            await h.kill("w1")
            resumed_s = await first_call(second, since=killed_at, timeout_s=KILL_ACK_WAIT_S * 3)
            print(f"kill -9 with ack wait {KILL_ACK_WAIT_S:.0f} s: the other worker resumed after {resumed_s:.1f} s")
            assert resumed_s <= KILL_ACK_WAIT_S + KILL_RESUME_MARGIN_S
            done = await h.wait_done(job.id, timeout_s=30)
            assert done.payload.state == JobState.succeeded
            # resumed: w2 found every segment's 2D in storage and only lifted and rendered
            assert [m for m, _ in second.calls if m in ("Decode", "Estimate")] == []
            assert [m for m, _ in second.calls].count("Lift") == 1
            assert all(store.exists(segment_keys(job.id, i)[1]) for i in range(3))
            assert JobManifest.from_json(store.get_bytes(job.key)).state == JobState.succeeded
    asyncio.run(scenario())


async def lease_renewed(store, job_id: str, timeout_s: float) -> None:
    """Return just after the job's owner next rewrites its lease."""
    def lease() -> object:
        return JobManifest.from_json(store.get_bytes(f"jobs/{job_id}/job.json")).lease_until
    before = await asyncio.to_thread(lease)
    deadline = time.monotonic() + timeout_s
    while await asyncio.to_thread(lease) == before:
        assert time.monotonic() < deadline, f"the lease of job {job_id} was not renewed in {timeout_s:.0f} s"
        await asyncio.sleep(0.02)


async def first_call(fake: FakeStages, since: float, timeout_s: float) -> float:
    """Seconds from ``since`` until ``fake`` sees its first stage call."""
    deadline = time.monotonic() + timeout_s
    while not fake.calls:
        if time.monotonic() > deadline:
            raise AssertionError(f"no stage call {timeout_s:.0f} s after {since:.1f}")
        await asyncio.sleep(0.05)
    return time.monotonic() - since


def calls(fake: FakeStages, method: str) -> int:
    return [m for m, _ in fake.calls].count(method)


def job_objects(store, job_id: str) -> dict[str, bytes]:
    """Every object a job's run left, by key under the job's prefix (the manifest aside)."""
    prefix = f"jobs/{job_id}/"
    return {k[len(prefix):]: store.get_bytes(k) for k in store.list_keys(prefix) if k != prefix + "job.json"}


def job_outcome(store, job_id: str) -> tuple:
    job = JobManifest.from_json(store.get_bytes(f"jobs/{job_id}/job.json"))
    artifacts = {name: (a.key.split("/", 2)[2], a.size_bytes, a.etag) for name, a in job.artifacts.items()}
    return job.state, job.segment_count, job.progress, artifacts, job_objects(store, job_id)


# SIGTERM with the default ack wait: a job handed back without clearing its lease would wait it out.
SIGTERM_ACK_WAIT_S = 30.0
SIGTERM_RESUME_S = 10.0
SEGMENT_FINISH_S = 1.0  # the segments in flight end this long after SIGTERM


def test_sigterm_finishes_the_segments_in_flight_and_the_other_worker_resumes_within_seconds(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream, ack_wait_s=SIGTERM_ACK_WAIT_S) as h:
            undisturbed = new_job(store)
            await h.start("w0", FakeStages(store, frame_count=128 * 3))
            await h.submit(undisturbed)
            assert (await h.wait_done(undisturbed.id)).payload.state == JobState.succeeded
            await h.stop("w0")

            first = FakeStages(store, frame_count=128 * 3)
            release = hanging(first, "Estimate")
            await h.start("w1", first)
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _eq(_count_async(first, "Estimate-blocked"), 2))  # segments 0 and 1 in flight
            second = FakeStages(store, frame_count=128 * 3)
            await h.start("w2", second)  # waits on the queue
            await asyncio.sleep(0.5)
            stopped_at = time.monotonic()
            stopping = asyncio.create_task(h.stop("w1"))  # SIGTERM
            asyncio.get_running_loop().call_later(SEGMENT_FINISH_S, release.set)
            resumed_s = await first_call(second, since=stopped_at, timeout_s=SIGTERM_ACK_WAIT_S * 1.5)
            await stopping
            print(f"SIGTERM with ack wait {SIGTERM_ACK_WAIT_S:.0f} s, segments in flight ending "
                  f"{SEGMENT_FINISH_S:.0f} s later: the other worker resumed after {resumed_s:.1f} s")
            assert resumed_s <= SIGTERM_RESUME_S
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.succeeded
            # w1 finished the two segments in flight; w2 did only the third's 2D, then followed the camera
            # through all three segments (a step after the 2D), lifted and rendered
            assert calls(first, "Estimate") == 2 and calls(first, "Lift") == 0 and calls(first, "TrackCamera") == 0
            assert sorted(m for m, _ in second.calls if m != "TrackCamera") == ["Decode", "Estimate", "Lift", "Probe", "Render"]
            assert calls(second, "TrackCamera") == 3
            assert job_outcome(store, job.id) == job_outcome(store, undisturbed.id)
    asyncio.run(scenario())


async def _count_async(fake: FakeStages, method: str) -> int:
    return calls(fake, method)


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


def test_a_stopping_worker_stuck_in_a_stage_call_hands_its_job_back_after_the_grace(store, settings, stream,
                                                                                       monkeypatch):
    monkeypatch.setattr(worker_module, "HAND_BACK_GRACE_S", 1.0)
    async def scenario():
        async with Harness(settings, store, stream, ack_wait_s=SIGTERM_ACK_WAIT_S) as h:
            first = FakeStages(store, frame_count=128)
            hanging(first, "Render")  # never answers
            await h.start("w1", first)
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _blocked(first, "Render"))
            await h.stop("w1")  # SIGTERM: the render is stopped after the grace; owner and lease cleared, nak
            handed_back = JobManifest.from_json(store.get_bytes(job.key))
            assert handed_back.owner == "" and handed_back.lease_until is None
            assert handed_back.state == JobState.queued
            second = FakeStages(store, frame_count=128)
            started_at = time.monotonic()
            await h.start("w2", second)
            resumed_s = await first_call(second, since=started_at, timeout_s=SIGTERM_ACK_WAIT_S * 1.5)
            assert resumed_s <= FETCH_AND_START_S
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.succeeded
            assert [m for m, _ in second.calls] == ["Probe", "Render"]
    asyncio.run(scenario())


FETCH_AND_START_S = 3.0  # a worker just started takes a message waiting on the queue within this


def test_a_redelivered_job_is_not_run_twice_by_the_same_worker_and_delete_stops_the_one_run(store, settings, stream):
    async def scenario():
        async with Harness(settings, store, stream) as h:
            fake = FakeStages(store, frame_count=128)
            release = hanging(fake, "Lift")
            worker = await h.start("w1", fake)

            async def acks_lost(*_args) -> None:  # its in-progress acks never arrive: the queue redelivers
                await asyncio.Event().wait()
            worker._in_progress = acks_lost
            job = new_job(store)
            await h.submit(job)
            await until(lambda: _blocked(fake, "Lift"))
            await until(lambda: _at_least(h.redeliveries(), 1), timeout_s=ACK_WAIT_S * 4)  # to this same worker
            await asyncio.sleep(ACK_WAIT_S * 1.5)  # and again
            assert calls(fake, "Probe") == 1 and calls(fake, "Lift-blocked") == 1
            assert worker.running == [job.id]
            await queue.publish_job(h.js, queue.JobTicket(job.id, 2))  # a second ticket for the running job
            await until(lambda: _eq(h.queued(), 1))  # dropped; the run's own message stays
            assert calls(fake, "Probe") == 1
            await JobControl(ManifestStore(store), lambda: h.nc).delete(job.id)
            release.set()
            done = await h.wait_done(job.id)
            assert done.payload.state == JobState.cancelled
            await asyncio.sleep(1.0)  # a second run, had there been one, would go on to render
            assert calls(fake, "Render") == 0 and store.list_keys(f"jobs/{job.id}/") == []
            await until(lambda: _eq(h.queued(), 0))
    asyncio.run(scenario())


async def _at_least(awaitable, value) -> bool:
    return (await awaitable) >= value


def test_a_job_whose_manifest_fails_validation_fails_with_the_reason_after_a_few_deliveries(store, settings, stream,
                                                                                           caplog):
    caplog.set_level(logging.INFO, logger="gateway.worker")

    async def scenario():
        async with Harness(settings, store, stream) as h:
            job = new_job(store)
            stored = json.loads(job.to_json())
            stored["options"]["max_persons"] = 99  # over the limit: the manifest fails validation
            original = json.dumps(stored).encode()
            store.put_bytes(job.key, original)
            await h.listen(job.id)
            await queue.publish_job(h.js, queue.JobTicket(job.id, 1))
            fake = FakeStages(store)
            worker = await h.start("w1", fake)
            worker.invalid_manifest_retries_s = (0.2, 0.2, 0.2)
            done = await h.wait_done(job.id, timeout_s=20)
            assert done.payload.state == JobState.failed
            error = done.payload.error
            assert error.stage == "jobs" and error.code == "INVALID_MANIFEST"
            assert "options.max_persons" in error.message and "99" in error.message
            failed = JobManifest.from_json(store.get_bytes(job.key))  # now a valid record of the failure
            assert failed.state == JobState.failed and failed.error == error
            assert failed.input_key == job.input_key and failed.options.max_persons == 0
            assert store.get_bytes(f"jobs/{job.id}/job.invalid.json") == original
            await until(lambda: _eq(h.queued(), 0))
            assert fake.calls == []
    asyncio.run(scenario())
    about_it = [r for r in caplog.records if "max_persons" in r.getMessage()]
    assert [r.levelname for r in about_it] == ["WARNING"] * 3 + ["ERROR"]  # one line per delivery, 4 deliveries
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("gateway.worker"))


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
