"""Per-owner limits on submissions (admins are not limited; 0 turns a limit off):

* ``HPE3D_QUOTA_JOBS_IN_FLIGHT``: the owner's jobs queued or running (submit and retry);
* ``HPE3D_QUOTA_UPLOADS_PER_HOUR``: the owner's accepted uploads in the last hour;
* ``HPE3D_QUOTA_STORED_MB``: the size of the owner's uploads still stored (the objects derived from a
  job follow its upload in size, and go with it);
* ``HPE3D_QUOTA_LIFTER_WEIGHTS``: how many lifter weights the owner keeps (``POST /v1/lifter-weights`` of a
  new name; replacing one of the same name always passes).

Over a limit the submission is refused with 429, ``Retry-After`` and a problem body naming the limit
(``QuotaExceeded``); nothing already stored is touched, and an upload refused for its size is
deleted. Counting reads keys, not manifests: the job index (``gateway/jobs/job_index.py``) gives the
stored bytes, ``quota/uploads/<user>/<rev>-<nonce>`` one empty object per accepted upload (kept an
hour; it names no job, so deleting a job does not give its upload back), and the in-flight markers
are checked against their manifests, dropped once a job has finished. Two submissions of one owner at
the same instant may both pass a limit they reach together.
"""
from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from services.common.settings import Settings
from services.common.storage import ObjectStore

from ..jobs.manifest import expires_at, user_slug
from ..jobs.manifest_store import ManifestStore
from .authentication import Caller
from .lifter_weights import own_weights_count

UPLOADS_PREFIX = "quota/uploads/"
HOUR = timedelta(hours=1)
_REV_BASE = 10 ** 13 - 1
IN_FLIGHT_RETRY_S = 30
WEIGHTS_RETRY_S = 3600   # a count that only a deletion lowers: Retry-After is a nominal hour


@dataclass
class QuotaExceeded(Exception):
    """A limit reached: answered 429 with ``Retry-After`` and this as an RFC 9457 problem."""

    limit: str       # the setting's name, e.g. HPE3D_QUOTA_JOBS_IN_FLIGHT
    allowed: int
    used: int
    retry_after_s: int
    detail: str


def _uploads_prefix(user: str) -> str:
    return f"{UPLOADS_PREFIX}{user_slug(user)}/"


def _upload_time(key: str) -> datetime:
    rev = int(key.rsplit("/", 1)[1].split("-", 1)[0])
    return datetime.fromtimestamp((_REV_BASE - rev) / 1000, tz=timezone.utc)


class Quotas:
    def __init__(self, settings: Settings, store: ObjectStore, manifests: ManifestStore):
        self.settings = settings
        self.store = store
        self.manifests = manifests

    def applies_to(self, caller: Caller) -> bool:
        return not caller.admin

    async def check_jobs_in_flight(self, caller: Caller) -> None:
        allowed = self.settings.quota_jobs_in_flight
        if not allowed or not self.applies_to(caller):
            return
        used = 0
        for job_id in await self.manifests.in_flight_ids(caller.user):
            job = await self.manifests.load(job_id)
            if job is None or job.state.finished:
                await self.manifests.unmark_in_flight(caller.user, job_id)
            else:
                used += 1
        if used >= allowed:
            raise QuotaExceeded("HPE3D_QUOTA_JOBS_IN_FLIGHT", allowed, used, IN_FLIGHT_RETRY_S,
                                f"{used} of your jobs are queued or running, the most this server allows at once "
                                f"({allowed}); submit again when one has finished")

    async def check_uploads_per_hour(self, caller: Caller, now: datetime | None = None) -> None:
        allowed = self.settings.quota_uploads_per_hour
        if not allowed or not self.applies_to(caller):
            return
        now = now or datetime.now(timezone.utc)
        keys = await asyncio.to_thread(self.store.list_keys, _uploads_prefix(caller.user))
        recent = []
        for key in keys:  # newest first
            if now - _upload_time(key) < HOUR:
                recent.append(key)
            else:
                await asyncio.to_thread(self.store.delete, key)
        if len(recent) >= allowed:
            oldest = _upload_time(recent[allowed - 1])
            wait = max(1, int((oldest + HOUR - now).total_seconds()) + 1)
            raise QuotaExceeded("HPE3D_QUOTA_UPLOADS_PER_HOUR", allowed, len(recent), wait,
                                f"you have uploaded {len(recent)} files in the last hour, the most this server "
                                f"allows ({allowed} an hour); the next one is accepted in {wait} s")

    async def check_stored_bytes(self, caller: Caller, adding: int = 0, now: datetime | None = None) -> None:
        allowed_mb = self.settings.quota_stored_mb
        if not allowed_mb or not self.applies_to(caller):
            return
        entries = await self.manifests.user_entries(caller.user)
        stored = sum(e.input_bytes for e in entries)
        allowed = allowed_mb * 1024 * 1024
        if stored + adding <= allowed and (adding or stored < allowed):
            return
        now = now or datetime.now(timezone.utc)
        if entries:
            first_expiry = expires_at(entries[-1].created_at, self.settings.retention_days)
            wait = max(1, int((first_expiry - now).total_seconds()))
        else:
            wait = 3600
        if adding:
            detail = (f"this upload of {adding / 2 ** 20:.1f} MB would bring your jobs' uploads to "
                      f"{(stored + adding) / 2 ** 20:.1f} MB, over the {allowed_mb} MB this server keeps per owner")
        else:
            detail = (f"your jobs' uploads take {stored / 2 ** 20:.1f} MB, the most this server keeps per owner "
                      f"({allowed_mb} MB)")
        raise QuotaExceeded("HPE3D_QUOTA_STORED_MB", allowed_mb, int(round(stored / 2 ** 20)), wait,
                            detail + "; delete jobs you no longer need, or wait for the oldest to expire")

    async def check_lifter_weights(self, caller: Caller, name: str) -> None:
        """An upload of new weights ``name`` past the owner's limit (replacing weights of that name is always
        allowed)."""
        allowed = self.settings.quota_lifter_weights
        if not allowed or not self.applies_to(caller):
            return
        used = await own_weights_count(self.store, caller.user, leaving_out=name)
        if used >= allowed:
            raise QuotaExceeded("HPE3D_QUOTA_LIFTER_WEIGHTS", allowed, used, WEIGHTS_RETRY_S,
                                f"you have {used} lifter weights stored, the most this server keeps per owner "
                                f"({allowed}); delete some (DELETE /v1/lifter-weights/NAME, hpe3d weights delete "
                                f"NAME) or upload under the name of one you replace")

    async def record_upload(self, caller: Caller, now: datetime | None = None) -> None:
        if not self.settings.quota_uploads_per_hour or not self.applies_to(caller):
            return
        now = now or datetime.now(timezone.utc)
        rev = _REV_BASE - int(now.timestamp() * 1000)
        key = f"{_uploads_prefix(caller.user)}{rev:013d}-{secrets.token_hex(4)}"
        await asyncio.to_thread(self.store.put_bytes, key, b"", "text/plain")
