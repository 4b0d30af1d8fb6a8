"""Two API replicas and a worker on one real nats-server and SeaweedFS store (fake stage stubs in the
worker): a job submitted to one replica is followed over SSE on the other, read on both, retried on
the other after it failed, and deleted from either."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time

import grpc
import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.jobs import queue
from gateway.worker.worker import JobWorker
from hpe3d_cli.local_stack import free_port
from tests.conftest import bearer, make_api_key
from tests.integration.test_jobs_pipeline import FakeClients, FakeStages, rpc_error
from tests.integration.test_jobs_worker import stream  # noqa: F401 - fixture: a fresh job stream


class WorkerThread:
    """A JobWorker with fake stages, in its own thread and event loop."""

    def __init__(self, settings, store, fake: FakeStages):
        self.settings, self.store, self.fake = settings, store, fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> "WorkerThread":
        self.thread.start()

        async def start():
            nc = await queue.connect(self.settings.nats_url, "test-worker", attempts=1)
            self.nc = nc
            self.stop = asyncio.Event()
            fake = self.fake
            self.task = asyncio.create_task(
                JobWorker(self.settings, self.store, nc, FakeClients(fake, fake, fake, fake), "w1").run(self.stop))
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            self.stop.set()
            await asyncio.wait_for(self.task, 30)
            await self.nc.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(40)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def replicas(settings, store, stream):  # noqa: F811
    dead = {f"{s}_addr": f"127.0.0.1:{free_port()}" for s in ("decoder", "pose2d", "lifter3d", "renderer")}
    s = dataclasses.replace(settings, nats_url=stream, job_ack_wait_s=5.0, segment_frames=128, stage_concurrency=2,
                            max_duration_s=60, outage_budget_s=5, **dead)
    key = bearer(make_api_key(store, "replica-tester"))
    with TestClient(create_app(s, store), headers=key) as a, TestClient(create_app(s, store), headers=key) as b:
        for client in (a, b):
            deadline = time.monotonic() + 10
            while client.app.state.api.queue.current() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        yield s, a, b


def sse_events(client: TestClient, job_id: str) -> list[tuple[str, dict]]:
    events, name = [], None
    with client.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: "):])))
                if name == "done":
                    break
    return events


def test_a_job_submitted_on_one_replica_is_followed_retried_and_deleted_on_the_other(replicas, store):
    s, a, b = replicas
    fake = FakeStages(store, frame_count=300,
                      failures={"Lift": [rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "no person found")]})
    with WorkerThread(s, store, fake):
        r = a.post("/v1/jobs", files={"file": ("clip.mp4", b"video bytes", "video/mp4")})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        events = sse_events(b, job_id)  # the other replica
        assert events[-1][0] == "done" and events[-1][1]["state"] == "failed"
        assert events[-1][1]["error"]["stage"] == "lifter3d"
        assert a.get(f"/v1/jobs/{job_id}").json()["state"] == b.get(f"/v1/jobs/{job_id}").json()["state"] == "failed"

        retried = b.post(f"/v1/jobs/{job_id}/retry")  # the Lift failure was a one-off
        assert retried.status_code == 202 and retried.json()["attempt"] == 2
        events = sse_events(a, job_id)
        assert events[-1][1]["state"] == "succeeded", events[-3:]
        calls = [m for m, _ in fake.calls]
        assert calls.count("Decode") == 3 and calls.count("Estimate") == 3  # the retry redid no 2D
        assert calls.count("Lift") == 2 and calls.count("Render") == 1
        job = a.get(f"/v1/jobs/{job_id}").json()
        assert job["state"] == "succeeded" and [x["name"] for x in job["links"]["artifacts"]] == ["poses.json"]
        assert b.get(job["links"]["artifacts"][0]["url"]).content == b"{}"

        assert b.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert a.get(f"/v1/jobs/{job_id}").status_code == 404
        assert store.list_keys(f"jobs/{job_id}/") == []
