"""JobControl.retry on its own, with a real SeaweedFS store and a NATS client that is connected but
whose JetStream refuses the job: the job stays failed with its error and attempt as they were."""
from __future__ import annotations

import asyncio

import nats.errors

from gateway.api.control import JobControl, QueueUnavailable
from gateway.jobs.manifest import JobError, JobManifest, JobState, new_job_id
from gateway.jobs.manifest_store import ManifestStore


class RefusingJetStream:
    """Every JetStream request times out, as when the server's JetStream is unavailable."""

    def __getattr__(self, name):
        async def refuse(*args, **kwargs):
            raise nats.errors.TimeoutError()
        return refuse


class ConnectedNats:
    def jetstream(self):
        return RefusingJetStream()


def test_a_retry_the_queue_refuses_leaves_the_job_failed_with_its_error(store):
    manifests = ManifestStore(store)
    error = JobError(stage="pose2d", code="UNAVAILABLE", message="dependency unavailable")
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.failed, error=error)
    control = JobControl(manifests, lambda: ConnectedNats())

    async def retry_then_load():
        await manifests.save(job)
        try:
            await control.retry(job)
        except QueueUnavailable as exc:
            refused = exc
        else:
            raise AssertionError("the retry was not refused")
        return refused, await manifests.load(job.id)

    try:
        refused, stored = asyncio.run(retry_then_load())
        assert "did not take the job" in str(refused)
        assert stored.state == JobState.failed and stored.attempt == 1
        assert stored.error == error
    finally:
        asyncio.run(manifests.delete_job(job.id))
