"""The job index: empty objects whose keys list jobs newest first, so that a page of the job list, a
user's usage and the expired jobs are found by listing keys, never by reading every manifest.

* ``index/all/<rev>-<id>``: every job (an admin's list, the retention sweep).
* ``index/users/<user>/<rev>-<id>-<bytes>``: one user's jobs with the size of each upload (their list,
  the stored-bytes quota).
* ``index/in-flight/<user>/<id>``: one user's jobs that were queued and may not have finished yet
  (the jobs-in-flight quota; the API drops a marker once it finds the job finished).

``<user>`` is ``user_slug(manifest.user)``; ``<rev>`` is 9999999999999 minus the job's creation time in
milliseconds, 13 digits, so that key order is newest first. Every key is derived from the manifest
(``keys_of``), so whoever deletes a job removes its entries too. An entry whose manifest is gone (a
delete that stopped half-way) is skipped by readers and removed with the job by the retention sweep.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from .manifest import JobManifest, user_slug

INDEX_PREFIX = "index/"
ALL_PREFIX = f"{INDEX_PREFIX}all/"
USERS_PREFIX = f"{INDEX_PREFIX}users/"
IN_FLIGHT_PREFIX = f"{INDEX_PREFIX}in-flight/"
_REV_BASE = 10 ** 13 - 1
_ENTRY = re.compile(r"^(\d{13})-([0-9a-f]{32})(?:-(\d+))?$")
CURSOR = re.compile(r"^\d{13}-[0-9a-f]{32}$")


@dataclass(frozen=True)
class IndexEntry:
    """One job as its index key names it."""

    job_id: str
    created_at: datetime
    input_bytes: int
    key: str

    @property
    def cursor(self) -> str:
        """What a page that ends with this job hands on: the next page starts after it."""
        return self.key.rsplit("/", 1)[1][:46]


def _rev(created_at: datetime) -> str:
    return f"{_REV_BASE - int(created_at.timestamp() * 1000):013d}"


def all_key(job: JobManifest) -> str:
    return f"{ALL_PREFIX}{_rev(job.created_at)}-{job.id}"


def user_prefix(user: str) -> str:
    return f"{USERS_PREFIX}{user_slug(user)}/"


def user_key(job: JobManifest) -> str:
    return f"{user_prefix(job.user)}{_rev(job.created_at)}-{job.id}-{job.input_bytes}"


def in_flight_prefix(user: str) -> str:
    return f"{IN_FLIGHT_PREFIX}{user_slug(user)}/"


def in_flight_key(user: str, job_id: str) -> str:
    return f"{in_flight_prefix(user)}{job_id}"


def keys_of(job: JobManifest) -> list[str]:
    """Every index key of ``job``: what deleting the job removes beside its prefix."""
    return [all_key(job), user_key(job), in_flight_key(job.user, job.id)]


def parse_entry(key: str) -> IndexEntry | None:
    """The job an ``index/all/`` or ``index/users/`` key names; None for anything else."""
    m = _ENTRY.match(key.rsplit("/", 1)[-1])
    if m is None:
        return None
    created = datetime.fromtimestamp((_REV_BASE - int(m.group(1))) / 1000, tz=timezone.utc)
    return IndexEntry(job_id=m.group(2), created_at=created, input_bytes=int(m.group(3) or 0), key=key)


def in_flight_job_id(key: str) -> str:
    return key.rsplit("/", 1)[-1]
