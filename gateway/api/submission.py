"""Turning a stored input into a job, the one path for an upload and a recorded live session: probe
it (``admission.admit``), save its manifest and list it in the job index, count it against its user's jobs in flight, put it
on the queue."""
from __future__ import annotations

from ..jobs.job_errors import JobFailed
from ..jobs.manifest import JobManifest, JobState
from .admission import admit
from .dependencies import ApiState


async def start_job(api: ApiState, job: JobManifest) -> None:
    """Admit ``job`` (its input already stored at ``job.input_key``), save it and enqueue it.

    Raises:
        JobFailed: the input itself is unusable (not a video, too long, ...); the job is saved as
            failed with the reason, for the caller to answer 422 with it.
        Exception: the queue refused it; the job's objects are deleted first.
    """
    try:
        await admit(job, api.clients, api.store, api.settings)
    except JobFailed as failed:
        job.state, job.error = JobState.failed, failed.error
        await api.manifests.create(job)
        raise
    await api.manifests.create(job)
    await api.manifests.mark_in_flight(job)
    try:
        await api.control.enqueue(job)
    except Exception:
        await api.manifests.delete_job(job.id, tombstone=False)
        raise
