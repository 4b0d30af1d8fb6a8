"""Job lifecycle inside one gateway process: start, look up, list, cancel + delete, resume."""
from __future__ import annotations

import asyncio
import logging

from hpe3d.v1 import common_pb2
from services.common.storage import ObjectStore

from .journal import JobJournal
from .manifest import JobManifest, JobState, job_prefix
from .pipeline import SHUTDOWN, JobPipeline

log = logging.getLogger(__name__)


class JobService:
    def __init__(self, store: ObjectStore, journal: JobJournal, pipeline: JobPipeline):
        self.store = store
        self.journal = journal
        self.pipeline = pipeline
        self._tasks: dict[str, asyncio.Task] = {}
        self._live: dict[str, JobManifest] = {}

    def start(self, job: JobManifest, info: common_pb2.VideoInfo | None = None) -> None:
        """Run ``job`` in the background; its manifest object stays live here until it finishes.
        ``info``: the video's facts when they are known already (from ``JobPipeline.admit``)."""
        self._live[job.id] = job
        task = asyncio.create_task(self.pipeline.run(job, info), name=f"job-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t, job_id=job.id: self._finished(job_id))

    def _finished(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._live.pop(job_id, None)

    def is_running_here(self, job_id: str) -> bool:
        return job_id in self._tasks

    async def get(self, job_id: str) -> JobManifest | None:
        live = self._live.get(job_id)
        return live if live is not None else await self.journal.load(job_id)

    async def list(self, limit: int) -> list[JobManifest]:
        stored = await self.journal.load_all()
        return [self._live.get(m.id, m) for m in stored][:limit]

    async def delete(self, job_id: str) -> bool:
        """Cancel the job if it runs here (no further stage calls) and delete all its objects.
        False when there is no such job."""
        task = self._tasks.get(job_id)
        if task is None and await self.journal.load(job_id) is None:
            return False
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self.store.delete_prefix, job_prefix(job_id))
        self.journal.forget(job_id)
        return True

    async def resume_unfinished(self) -> list[str]:
        """Restart every stored job left queued or running (by a gateway that stopped)."""
        resumed = []
        for job in await self.journal.load_all():
            if job.state in (JobState.queued, JobState.running) and not self.is_running_here(job.id):
                log.info("resuming job %s (was %s)", job.id, job.state.value)
                self.start(job)
                resumed.append(job.id)
        return resumed

    async def shutdown(self) -> None:
        """Stop the tasks without marking their jobs cancelled in storage, so the next start
        resumes them."""
        tasks = list(self._tasks.values())
        for job_id in list(self._tasks):
            self._live.pop(job_id, None)
        for t in tasks:
            t.cancel(SHUTDOWN)
        await asyncio.gather(*tasks, return_exceptions=True)
