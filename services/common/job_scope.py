"""Every stage call touches only its own job's objects.

A call names its job with the request's ``job_id`` field (for Pose2D: ``segment.job_id``) or the
``x-job-id`` call metadata (the only way for ``Decoder.Probe``); when both are given they must agree.
Every object it reads or writes (each ``ObjectRef`` anywhere in the request, and key prefixes such
as ``RenderRequest.output_prefix``) must lie under ``jobs/{job_id}/`` in this server's bucket.
Otherwise ``OutsideJob`` is raised, which the server interceptor answers with PERMISSION_DENIED and
a message naming the key and the job. A call that names no object (say, the lifter given its 2D
keypoints inline) needs no job.

Keys are checked as S3 keys: no empty, ``.`` or ``..`` path segments, no backslashes or control
characters, so a key cannot climb out of its job's folder on a store that normalises paths.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

#: Every object of a job lives under ``JOBS_PREFIX + job_id + "/"``.
JOBS_PREFIX = "jobs/"
JOB_ID_METADATA = "x-job-id"
OBJECT_REF = "hpe3d.v1.ObjectRef"
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


class OutsideJob(PermissionError):
    """A call names an object outside its job's prefix (or names objects but no job)."""


def job_prefix(job_id: str) -> str:
    """``jobs/{job_id}/``: the folder of every object of one job."""
    return f"{JOBS_PREFIX}{job_id}/"


def job_metadata(job_id: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that names ``job_id`` (what a caller sends with every stage call)."""
    return ((JOB_ID_METADATA, job_id),)


def metadata_job_id(context: grpc.ServicerContext | None) -> str:
    """The ``x-job-id`` call metadata, or "" when absent."""
    for key, value in (context.invocation_metadata() if context is not None else None) or ():
        if key == JOB_ID_METADATA:
            return value
    return ""


def _unsafe_key_reason(key: str) -> str:
    if _CONTROL.search(key):
        return "holds a backslash or control character"
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        return "holds an empty, '.' or '..' path segment"
    return ""


@lru_cache(maxsize=None)
def _may_hold_ref(descriptor: Descriptor) -> bool:
    """Whether a message of this type can contain an ObjectRef (so the walk can skip e.g. keypoints)."""
    seen: set[str] = set()

    def visit(d: Descriptor) -> bool:
        if d.full_name == OBJECT_REF:
            return True
        if d.full_name in seen:
            return False
        seen.add(d.full_name)
        return any(f.message_type is not None and visit(f.message_type) for f in d.fields)

    return visit(descriptor)


def object_refs(message: Message, path: str = "") -> Iterator[tuple[str, Message]]:
    """Every ObjectRef set in ``message``, with its field path (``segments[2]``, ``segment.frames``)."""
    for field, value in message.ListFields():
        if field.message_type is None or not _may_hold_ref(field.message_type):
            continue
        name = f"{path}.{field.name}" if path else field.name
        repeated = field.label == FieldDescriptor.LABEL_REPEATED
        for i, item in enumerate(value if repeated else [value]):
            where = f"{name}[{i}]" if repeated else name
            if field.message_type.full_name == OBJECT_REF:
                yield where, item
            else:
                yield from object_refs(item, where)


@dataclass(frozen=True)
class JobScope:
    """The job a call works for and the bucket its objects must be in; ``job_id`` "" = none named."""

    job_id: str
    bucket: str

    @classmethod
    def of_call(cls, context: grpc.ServicerContext | None, bucket: str, request_job_id: str = "") -> "JobScope":
        """The job named by the request field ``request_job_id`` and/or the ``x-job-id`` metadata."""
        from_metadata = metadata_job_id(context)
        if request_job_id and from_metadata and request_job_id != from_metadata:
            raise OutsideJob(f"the request names job {request_job_id!r} but its {JOB_ID_METADATA} metadata says "
                             f"{from_metadata!r}")
        job_id = request_job_id or from_metadata
        if job_id and not _JOB_ID.match(job_id):
            raise OutsideJob(f"job id {job_id!r} is not a valid job id (letters, digits, '_', '.', '-'; "
                             "at most 128)")
        return cls(job_id, bucket)

    @property
    def prefix(self) -> str:
        return job_prefix(self.job_id)

    def check_key(self, key: str, what: str, prefix: bool = False) -> None:
        """Raise ``OutsideJob`` unless ``key`` (named ``what`` in the message) lies in this job; a
        ``prefix`` (a folder of keys) may also be the job's folder itself."""
        if not self.job_id:
            raise OutsideJob(f"{what} {key!r} names an object but the call names no job "
                             f"(set job_id or the {JOB_ID_METADATA} metadata)")
        inside = key.startswith(self.prefix) if prefix else (key.startswith(self.prefix) and key != self.prefix)
        if not inside:
            raise OutsideJob(f"{what} {key!r} is outside job {self.job_id!r} (its objects are under "
                             f"{self.prefix!r})")
        reason = _unsafe_key_reason(key)
        if reason:
            raise OutsideJob(f"{what} {key!r} {reason}; refused for job {self.job_id!r}")

    def check_bucket(self, bucket: str, what: str) -> None:
        if bucket not in ("", self.bucket):
            raise OutsideJob(f"{what} bucket {bucket!r} is not this server's bucket {self.bucket!r} "
                             f"(job {self.job_id or '(none)'!r})")

    def check_ref(self, ref: Message, what: str) -> None:
        self.check_bucket(ref.bucket, what)
        self.check_key(ref.key, what)

    def check_request(self, request: Message, prefixes: dict[str, str] | None = None,
                      buckets: dict[str, str] | None = None) -> None:
        """Check every ObjectRef set in ``request`` that names a key, each non-empty key prefix in
        ``prefixes`` (field name -> value, e.g. ``{"output_prefix": request.output_prefix}``) and
        each bucket name in ``buckets`` (field name -> value)."""
        for where, ref in object_refs(request):
            if ref.key:
                self.check_ref(ref, where)
        for where, value in (prefixes or {}).items():
            if value:
                self.check_key(value if value.endswith("/") else value + "/", where, prefix=True)
        for where, value in (buckets or {}).items():
            self.check_bucket(value, where)


def check_job_scope(request: Message, context: grpc.ServicerContext | None, bucket: str,
                    request_job_id: str = "", prefixes: dict[str, str] | None = None,
                    buckets: dict[str, str] | None = None) -> JobScope:
    """The one call a servicer makes first: the call's job, with every object of ``request`` checked
    to lie under ``jobs/{job}/`` in ``bucket``; raises ``OutsideJob`` (PERMISSION_DENIED)."""
    scope = JobScope.of_call(context, bucket, request_job_id)
    scope.check_request(request, prefixes, buckets)
    return scope
