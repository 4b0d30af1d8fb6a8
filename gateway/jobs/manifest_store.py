"""Job manifests and job objects in storage: read, write, list, and delete a job with a tombstone.

Every method is one storage round trip (or a few) run in a thread; none retries beyond what
``ObjectStore`` does itself, so callers choose: the worker waits outages out (``outage.py``), the
API answers 503 at once.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from services.common.storage import ObjectNotFound, ObjectStore

from .manifest import JOBS_PREFIX, TOMBSTONES_PREFIX, JobManifest, job_prefix, manifest_key, tombstone_key

LIST_CONCURRENCY = 16  # manifests read at once when listing


class ManifestStore:
    def __init__(self, store: ObjectStore):
        self.store = store

    async def load(self, job_id: str) -> JobManifest | None:
        try:
            data = await asyncio.to_thread(self.store.get_bytes, manifest_key(job_id))
        except ObjectNotFound:
            return None
        return JobManifest.from_json(data)

    async def save(self, manifest: JobManifest) -> None:
        """Write the manifest as it is now (``updated_at`` set to now)."""
        manifest.touch()
        await asyncio.to_thread(self.store.put_bytes, manifest.key, manifest.to_json(), "application/json")

    async def load_all(self, limit: int | None = None) -> list[JobManifest]:
        """Stored manifests, newest first (at most ``limit``)."""
        keys = await asyncio.to_thread(self.store.list_keys, JOBS_PREFIX)
        ids = [k[len(JOBS_PREFIX):-len("/job.json")] for k in keys if k.endswith("/job.json") and k.count("/") == 2]
        gate = asyncio.Semaphore(LIST_CONCURRENCY)

        async def one(job_id: str) -> JobManifest | None:
            async with gate:
                try:
                    return await self.load(job_id)
                except ValueError:  # a manifest being rewritten or not ours: skip it
                    return None
        manifests = [m for m in await asyncio.gather(*(one(i) for i in ids)) if m is not None]
        manifests.sort(key=lambda m: m.created_at, reverse=True)
        return manifests if limit is None else manifests[:limit]

    async def delete_job(self, job_id: str) -> int:
        """Tombstone the job, then delete every object under its prefix; returns how many."""
        now = datetime.now(timezone.utc).isoformat().encode()
        await asyncio.to_thread(self.store.put_bytes, tombstone_key(job_id), now, "text/plain")
        return await self.delete_objects(job_id)

    async def delete_objects(self, job_id: str) -> int:
        return await asyncio.to_thread(self.store.delete_prefix, job_prefix(job_id))

    async def is_tombstoned(self, job_id: str) -> bool:
        return await asyncio.to_thread(self.store.exists, tombstone_key(job_id))

    async def sweep_tombstones(self, keep_for: timedelta) -> int:
        """Delete whatever late writes left under tombstoned jobs' prefixes; forget tombstones
        older than ``keep_for`` (longer than any stage call can take). Returns objects deleted."""
        deleted = 0
        now = datetime.now(timezone.utc)
        for key in await asyncio.to_thread(self.store.list_keys, TOMBSTONES_PREFIX):
            job_id = key[len(TOMBSTONES_PREFIX):]
            deleted += await self.delete_objects(job_id)
            try:
                stamp = datetime.fromisoformat((await asyncio.to_thread(self.store.get_bytes, key)).decode())
            except (ObjectNotFound, ValueError):
                continue
            if now - stamp > keep_for:
                await asyncio.to_thread(self.store.delete_prefix, key)
        return deleted
