"""Writing job manifests to storage and announcing every change to SSE subscribers and metrics."""
from __future__ import annotations

import asyncio

from services.common.storage import ObjectNotFound, ObjectStore

from . import metrics
from .events import EventHub, done_event, progress_event
from .manifest import JOBS_PREFIX, JobManifest, manifest_key


class JobJournal:
    """The one writer of ``jobs/{id}/job.json``; writes of one job never overlap."""

    def __init__(self, store: ObjectStore, hub: EventHub):
        self.store = store
        self.hub = hub
        self._locks: dict[str, asyncio.Lock] = {}
        self._known_state: dict[str, str] = {}

    async def save(self, manifest: JobManifest, stage: str = "", message: str = "") -> None:
        """Persist the manifest and publish a progress event (a done event once it is finished)."""
        manifest.touch()
        data = manifest.to_json()
        lock = self._locks.setdefault(manifest.id, asyncio.Lock())
        async with lock:
            await asyncio.to_thread(self.store.put_bytes, manifest.key, data, "application/json")
        state = manifest.state.value
        metrics.record_transition(self._known_state.get(manifest.id), state)
        self._known_state[manifest.id] = state
        self.hub.publish(manifest.id, progress_event(manifest, stage, message))
        if manifest.state.finished:
            self.hub.publish(manifest.id, done_event(manifest))

    def forget(self, job_id: str) -> None:
        """Drop what this process tracks about a deleted job."""
        state = self._known_state.pop(job_id, None)
        if state is not None:
            metrics.JOBS_BY_STATE.labels(state).dec()
        self._locks.pop(job_id, None)

    async def load(self, job_id: str) -> JobManifest | None:
        try:
            data = await asyncio.to_thread(self.store.get_bytes, manifest_key(job_id))
        except ObjectNotFound:
            return None
        return JobManifest.from_json(data)

    async def load_all(self) -> list[JobManifest]:
        """Every stored manifest, newest first."""
        keys = await asyncio.to_thread(self.store.list_keys, JOBS_PREFIX)
        ids = [k[len(JOBS_PREFIX):-len("/job.json")] for k in keys if k.endswith("/job.json")
               and k.count("/") == 2]
        manifests = [m for m in await asyncio.gather(*(self.load(i) for i in ids)) if m is not None]
        return sorted(manifests, key=lambda m: m.created_at, reverse=True)
