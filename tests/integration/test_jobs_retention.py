"""Retention with an injectable clock, on a real SeaweedFS store: the sweep deletes a job past
HPE3D_RETENTION_DAYS with every object it has (derived ones and index entries included: nothing in
the bucket names it any more), keeps younger jobs, and leaves a job a live worker runs for later."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from gateway.jobs.manifest import JobManifest, JobState
from gateway.jobs.manifest_store import ManifestStore
from gateway.jobs.retention import delete_expired
from tests.integration.test_gateway_auth import finished_job

DAYS = 30


def keys_naming(store, job_id: str) -> list[str]:
    return [k for k in store.list_keys("") if job_id in k]


def test_the_sweep_deletes_expired_jobs_with_everything_they_have(store):
    now = datetime.now(timezone.utc)
    old = finished_job(store, "key:alice", created_at=now - timedelta(days=DAYS, minutes=1))
    young = finished_job(store, "key:alice", created_at=now - timedelta(days=DAYS - 1))
    held = finished_job(store, "key:bob", created_at=now - timedelta(days=DAYS + 1))
    held = held.model_copy(update={"state": JobState.running, "owner": "w1",
                                   "lease_until": now + timedelta(minutes=5)})
    store.put_bytes(held.key, held.to_json())
    assert len(keys_naming(store, old.id)) >= 9

    manifests = ManifestStore(store)
    deleted = asyncio.run(delete_expired(manifests, DAYS, now=now))
    assert old.id in deleted and young.id not in deleted and held.id not in deleted
    assert keys_naming(store, old.id) == []
    assert JobManifest.from_json(store.get_bytes(young.key)).id == young.id
    assert store.exists(held.key)  # a worker still runs it: a later sweep deletes it

    later = now + timedelta(days=2)  # the young job's retention has run out too, and the lease
    deleted = asyncio.run(delete_expired(manifests, DAYS, now=later))
    assert {young.id, held.id} <= set(deleted)
    assert keys_naming(store, young.id) == []
    assert asyncio.run(delete_expired(manifests, 0, now=later + timedelta(days=999))) == []  # 0 keeps jobs
