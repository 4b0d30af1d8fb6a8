"""Retention: a job and every object it has are deleted ``HPE3D_RETENTION_DAYS`` after it was
submitted (0 keeps jobs until they are deleted). The workers' sweep runs ``delete_expired`` every
minute; the job index (``job_index.py``) gives the expired jobs oldest first, from key names alone.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from .manifest import expires_at
from .manifest_store import ManifestStore

log = logging.getLogger(__name__)


async def delete_expired(manifests: ManifestStore, retention_days: float, now: datetime | None = None) -> list[str]:
    """Delete every job whose retention has run out at ``now`` (the clock is injectable), with its
    objects, derived ones included, and its index entries; returns their ids. A job a live worker
    still runs waits for a later sweep."""
    if retention_days <= 0:
        return []
    now = now or datetime.now(timezone.utc)
    deleted = []
    for entry in reversed(await manifests.all_entries()):  # oldest first
        if expires_at(entry.created_at, retention_days) > now:
            break
        job = await manifests.load(entry.job_id)
        if job is not None and job.owner_alive(now):
            continue
        if job is None:  # an index entry a delete left behind: remove what is left under its id
            await manifests.delete_objects(entry.job_id)
            await asyncio.to_thread(manifests.store.delete, entry.key)
        else:
            await manifests.delete_job(job.id, tombstone=not job.state.finished)
        log.info("job %s expired (submitted %s, kept %g days): deleted", entry.job_id, entry.created_at.isoformat(),
                 retention_days)
        deleted.append(entry.job_id)
    return deleted
