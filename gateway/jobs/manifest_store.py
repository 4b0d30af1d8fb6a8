"""Job manifests and job objects in storage: read, write, list, and delete a job with a tombstone.

Every method is one storage round trip (or a few) run in a thread; none retries beyond what
``ObjectStore`` does itself, so callers choose: the worker waits outages out (``outage.py``), the
API answers 503 at once.

A stored manifest that fails validation reads (``load``, ``load_all``) as a failed job whose error
says why (``InvalidManifest.failed_job``); the worker reads with ``load_valid`` and decides.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from pydantic import ValidationError

from services.common.storage import ObjectNotFound, ObjectStore

from . import job_index
from .manifest import (JOBS_PREFIX, TOMBSTONES_PREFIX, InvalidManifest, JobManifest, invalid_manifest_key, is_job_id,
                       job_prefix, manifest_key, tombstone_key)

LIST_CONCURRENCY = 16  # manifests read at once when listing


class ManifestStore:
    def __init__(self, store: ObjectStore):
        self.store = store

    async def load(self, job_id: str) -> JobManifest | None:
        """The job, or None when it has no manifest; an invalid manifest reads as a failed job."""
        try:
            return await self.load_valid(job_id)
        except InvalidManifest as invalid:
            return invalid.failed_job()

    async def load_valid(self, job_id: str) -> JobManifest | None:
        """The job, or None when it has no manifest; ``InvalidManifest`` when it fails validation."""
        try:
            data = await asyncio.to_thread(self.store.get_bytes, manifest_key(job_id))
        except ObjectNotFound:
            return None
        try:
            return JobManifest.from_json(data)
        except ValidationError as exc:
            raise InvalidManifest.of(job_id, data, exc) from exc

    async def save(self, manifest: JobManifest) -> None:
        """Write the manifest as it is now (``updated_at`` set to now)."""
        manifest.touch()
        await asyncio.to_thread(self.store.put_bytes, manifest.key, manifest.to_json(), "application/json")

    async def replace_invalid(self, invalid: InvalidManifest) -> JobManifest:
        """Fail a job whose manifest fails validation: keep what was stored as ``job.invalid.json``
        beside it and store ``invalid.failed_job()`` as its manifest; returns that job."""
        await asyncio.to_thread(self.store.put_bytes, invalid_manifest_key(invalid.job_id), invalid.data,
                                "application/json")
        job = invalid.failed_job()
        await self.save(job)
        return job
    async def create(self, manifest: JobManifest) -> None:
        """Save a new job's manifest, then list it in the job index (``job_index.py``)."""
        await self.save(manifest)
        for key in (job_index.all_key(manifest), job_index.user_key(manifest)):
            await asyncio.to_thread(self.store.put_bytes, key, b"", "text/plain")

    async def mark_in_flight(self, manifest: JobManifest) -> None:
        """Record that ``manifest`` (just queued, or queued again) counts against its user's jobs in flight."""
        await asyncio.to_thread(self.store.put_bytes, job_index.in_flight_key(manifest.user, manifest.id), b"",
                                "text/plain")

    async def load_page(self, user: str | None, limit: int, cursor: str = "") -> tuple[list[JobManifest], str | None]:
        """One page of the job list, newest first: ``user``'s jobs, or everybody's for None. Returns
        the manifests and the cursor of the next page (None on the last page). Only this page's
        manifests are read."""
        prefix = job_index.ALL_PREFIX if user is None else job_index.user_prefix(user)
        after = f"{prefix}{cursor}." if cursor else ""
        keys = await asyncio.to_thread(self.store.list_keys_after, prefix, after, limit + 1)
        entries = [e for e in map(job_index.parse_entry, keys) if e is not None]
        page, rest = entries[:limit], entries[limit:]
        return await self._load_many([e.job_id for e in page]), (page[-1].cursor if rest else None)

    async def user_entries(self, user: str) -> list[job_index.IndexEntry]:
        """Every job of ``user`` as its index entry says (id, creation time, upload size), newest first."""
        keys = await asyncio.to_thread(self.store.list_keys, job_index.user_prefix(user))
        return [e for e in map(job_index.parse_entry, keys) if e is not None]

    async def all_entries(self) -> list[job_index.IndexEntry]:
        """Every indexed job (id and creation time), newest first."""
        keys = await asyncio.to_thread(self.store.list_keys, job_index.ALL_PREFIX)
        return [e for e in map(job_index.parse_entry, keys) if e is not None]

    async def in_flight_ids(self, user: str) -> list[str]:
        keys = await asyncio.to_thread(self.store.list_keys, job_index.in_flight_prefix(user))
        return [job_index.in_flight_job_id(k) for k in keys]

    async def unmark_in_flight(self, user: str, job_id: str) -> None:
        await asyncio.to_thread(self.store.delete, job_index.in_flight_key(user, job_id))

    async def load_all(self, limit: int | None = None) -> list[JobManifest]:
        """Stored manifests, newest first (at most ``limit``)."""
        keys = await asyncio.to_thread(self.store.list_keys, JOBS_PREFIX)
        ids = [k[len(JOBS_PREFIX):-len("/job.json")] for k in keys if k.endswith("/job.json") and k.count("/") == 2]
        manifests = await self._load_many(ids)
        manifests.sort(key=lambda m: m.created_at, reverse=True)
        return manifests if limit is None else manifests[:limit]

    async def _load_many(self, ids: list[str]) -> list[JobManifest]:
        """The manifests of ``ids`` that exist, in that order, ``LIST_CONCURRENCY`` read at once."""
        gate = asyncio.Semaphore(LIST_CONCURRENCY)

        async def one(job_id: str) -> JobManifest | None:
            async with gate:
                return await self.load(job_id)  # None: deleted since it was listed
        return [m for m in await asyncio.gather(*(one(i) for i in ids if is_job_id(i))) if m is not None]

    async def delete_job(self, job_id: str, tombstone: bool = True) -> int:
        """Tombstone the job (unless told it runs nowhere), delete every object under its prefix,
        then its index entries; returns how many objects under the prefix were deleted."""
        try:
            manifest = await self.load(job_id)
        except ValueError:
            manifest = None
        if tombstone:
            now = datetime.now(timezone.utc).isoformat().encode()
            await asyncio.to_thread(self.store.put_bytes, tombstone_key(job_id), now, "text/plain")
        deleted = await self.delete_objects(job_id)
        if manifest is not None:
            for key in job_index.keys_of(manifest):
                await asyncio.to_thread(self.store.delete, key)
        return deleted

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
