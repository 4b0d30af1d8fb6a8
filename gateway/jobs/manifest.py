"""The job manifest: everything known about one job, stored as ``jobs/{id}/job.json``.

The manifest is the single source of truth for a job, and says whose it is (``user``). The API
writes it when a job is submitted or retried; while a worker runs the job, that worker is its only writer: it records itself as the
``owner`` with a lease it renews (``lease_until``) and rewrites the manifest after every stage and
on segment progress. A redelivered job resumes from it. The API answers every read from it.

Stage names (progress keys, error stages) are those of ``services.common.stage_names``.
"""
from __future__ import annotations

import enum
import hashlib
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

# the stages' own rule for a job's keys (JOBS_PREFIX is re-exported for manifest_store)
from services.common.job_scope import JOBS_PREFIX, job_prefix  # noqa: F401
from services.common.pose_models import POSE_MODELS
from services.common.request_options import MAX_PERSONS_LIMIT
from services.common.stage_names import JOBS as JOBS_STAGE
from services.common.stage_names import STAGES

SCHEMA_VERSION = 2
TOMBSTONES_PREFIX = "tombstones/"
INVALID_MANIFEST = "INVALID_MANIFEST"  # the error code of a job whose stored manifest fails validation
# Progress keys and error stages of schema 1 manifests, in today's vocabulary.
_SCHEMA1_STAGES = {"decode": "decoder", "lift": "lifter3d", "render": "renderer", "gateway": "jobs"}


class JobState(str, enum.Enum):
    """``queued``: waiting for a worker (also once a stopping worker handed it back). ``running``: a
    live worker runs it. ``recovering``: shown (never stored) for a running job whose worker stopped
    renewing its lease; the queue hands it to another worker, which resumes it. Then one of the three
    final states."""

    queued = "queued"
    running = "running"
    recovering = "recovering"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


WORKING_SIZE_LIMIT = 4096   # largest working size (pixels, longer side) one job may ask for


class JobOptions(BaseModel):
    """What the caller may choose per job; 0 means the server default from the settings."""

    max_persons: int = Field(0, ge=0, le=MAX_PERSONS_LIMIT,
                             description="most persons tracked per frame; 0 = server default")
    working_size: int = Field(0, ge=0, le=WORKING_SIZE_LIMIT,
                              description="longer side of decoded frames in pixels; 0 = server default")
    render: bool = Field(True, description="encode the rendered MP4 (false: exports only)")
    pose_model: str = Field("", max_length=64, pattern=r"^[a-z0-9_]*$",
                            json_schema_extra={"enum": ["", *POSE_MODELS]},
                            description="2D pose model, one of GET /v1/models; empty = the default (blazepose). "
                                        "A known model that is not loaded now is refused with 422, which names the "
                                        "checkpoint to supply")
    lifter_weights: str = Field("", max_length=64, pattern=r"^([a-z0-9][a-z0-9_-]{0,63})?$",
                                description="3D lifter weights, one of GET /v1/lifter-weights: a shipped name or "
                                            "one of the caller's own uploaded weights; empty = the default "
                                            "(gastnet_bandai_27f). A name the caller cannot use is refused with 422; "
                                            "poses.json's `model` names the file the job lifted with")

    @field_validator("render", mode="before")
    @classmethod
    def _render_is_true_or_false(cls, value):
        """A form field says ``true`` or ``false``; 0, 1, "yes" and the like are refused, as the schema says."""
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError("send true or false")
        return value


class StageProgress(BaseModel):
    done: int = 0
    total: int = 0


class JobError(BaseModel):
    """Why a job failed: the stage, a stable code and a message a person can act on."""

    stage: str = Field(description="decoder, pose2d, lifter3d, renderer, or jobs (the job machinery itself)")
    code: str = Field(description="INVALID_ARGUMENT, FAILED_PRECONDITION, UNAVAILABLE, ... or a gateway code")
    message: str


class VideoSummary(BaseModel):
    """The facts ``Decoder.Probe`` found, without the per-frame timestamps."""

    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    rotation_deg: int = 0
    codec: str = ""
    variable_frame_rate: bool = False
    still_image: bool = Field(False, description="a photo (JPEG, PNG, WebP): one frame, fps and duration 0")
    announced_frame_count: int = Field(0, description="frames the container announces (more than frame_count "
                                                      "when the file is truncated); 0 when unknown")


class StoredArtifact(BaseModel):
    """An output object; ``size_bytes`` and ``etag`` are what storage said when the job finished,
    and an artefact is served only while the object still matches them."""

    key: str
    content_type: str = "application/octet-stream"
    size_bytes: int = 0
    etag: str = ""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_job_id() -> str:
    return uuid.uuid4().hex


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def is_job_id(text: str) -> bool:
    """Job ids are 32 lowercase hex digits; anything else is rejected before touching storage."""
    return bool(_JOB_ID.match(text))


def safe_filename(name: str | None) -> str:
    """A storage-safe version of an uploaded file name (no directories, no odd characters)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    return base[:120] or "upload.bin"


class JobManifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    id: str
    state: JobState = JobState.queued
    options: JobOptions = Field(default_factory=JobOptions)
    input_key: str
    input_name: str
    input_bytes: int = 0
    progress: dict[str, StageProgress] = Field(
        default_factory=lambda: {name: StageProgress() for name in STAGES})
    video: VideoSummary | None = None
    error: JobError | None = None
    warnings: list[str] = Field(default_factory=list, description="facts about the input the user should know "
                                                                  "(e.g. frames missing from a truncated file)")
    segment_count: int = 0
    poses2d_keys: list[str] = Field(default_factory=list)
    poses3d_key: str = ""
    artifacts: dict[str, StoredArtifact] = Field(default_factory=dict)
    attempt: int = Field(1, description="1 for the first run; POST .../retry adds one")
    user: str = Field("", description="who the job belongs to (``key:<name>`` for an API key, ``oidc:<subject>`` "
                                      "for a JWT); only they and admins see it; empty for jobs of no one "
                                      "(HPE3D_AUTH=off), which admins see")
    owner: str = Field("", description="id of the worker running the job; empty when none does")
    lease_until: datetime | None = Field(None, description="the owner renews this while it works; past it, "
                                                           "the owner counts as gone")
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    @model_validator(mode="before")
    @classmethod
    def _upgrade_schema1(cls, data):
        """Schema 1 manifests named the stages decode, lift, render; read them in today's names."""
        if isinstance(data, dict) and data.get("schema_version", 1) == 1:
            data = dict(data, schema_version=SCHEMA_VERSION)
            if isinstance(data.get("progress"), dict):
                data["progress"] = {_SCHEMA1_STAGES.get(k, k): v for k, v in data["progress"].items()}
            if isinstance(data.get("error"), dict) and "stage" in data["error"]:
                stage = data["error"]["stage"]
                data["error"] = dict(data["error"], stage=_SCHEMA1_STAGES.get(stage, stage))
        return data

    @property
    def key(self) -> str:
        return manifest_key(self.id)

    def owner_alive(self, now: datetime | None = None) -> bool:
        """Whether a worker holds the job with a lease that has not run out."""
        return bool(self.owner) and self.lease_until is not None and self.lease_until > (now or _now())

    def shown_state(self, now: datetime | None = None) -> JobState:
        """The state a reader is told: ``running`` only while its owner's lease holds."""
        if self.state == JobState.running and not self.owner_alive(now):
            return JobState.recovering
        return self.state

    def touch(self) -> None:
        self.updated_at = _now()

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "JobManifest":
        return cls.model_validate_json(data)


def user_slug(user: str) -> str:
    """A user as one token of an object key or a NATS subject: a digest (a user name may hold any
    character), ``_`` for the jobs of no one."""
    return hashlib.sha256(user.encode()).hexdigest()[:24] if user else "_"


def expires_at(created_at: datetime, retention_days: float) -> datetime:
    """When the workers' sweep deletes a job created at ``created_at`` (HPE3D_RETENTION_DAYS)."""
    return created_at + timedelta(days=retention_days)


def manifest_key(job_id: str) -> str:
    return f"{job_prefix(job_id)}job.json"


def input_key(job_id: str, filename: str) -> str:
    """Where the upload is stored; ``filename`` is the ``safe_filename`` of the uploaded name."""
    return f"{job_prefix(job_id)}input/{filename}"


def segment_keys(job_id: str, index: int) -> tuple[str, str]:
    """(frames key, poses2d key) of one segment."""
    base = f"{job_prefix(job_id)}segments/{index:05d}/"
    return base + "frames.pb", base + "poses2d.pb"


def segment_camera_key(job_id: str, index: int) -> str:
    """The decoder's camera motion (CameraMotion) of one segment, beside its frames."""
    return f"{job_prefix(job_id)}segments/{index:05d}/camera.pb"


def poses3d_key(job_id: str) -> str:
    return f"{job_prefix(job_id)}poses3d.pb"


def output_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}output/"


def tombstone_key(job_id: str) -> str:
    """Marks a deleted job, outside its prefix, so that objects a late stage call writes under
    the prefix are found and removed too."""
    return f"{TOMBSTONES_PREFIX}{job_id}"


def invalid_manifest_key(job_id: str) -> str:
    """Where a worker keeps the bytes of a manifest that failed validation when it fails the job."""
    return f"{job_prefix(job_id)}job.invalid.json"


class InvalidManifest(ValueError):
    """A stored manifest that does not validate as a ``JobManifest`` (``reason`` says which fields
    and why; ``data`` is what was stored)."""

    def __init__(self, job_id: str, reason: str, data: bytes):
        super().__init__(f"the manifest of job {job_id} ({manifest_key(job_id)}) fails validation: {reason}")
        self.job_id = job_id
        self.reason = reason
        self.data = data

    @classmethod
    def of(cls, job_id: str, data: bytes, error: ValidationError) -> "InvalidManifest":
        return cls(job_id, validation_reason(error), data)

    def failed_job(self) -> JobManifest:
        """The job as it is shown and recorded: every top-level field of the stored manifest that
        validates is kept, the others take their defaults, and the job is failed with the reason."""
        try:
            raw = json.loads(self.data)
        except ValueError:
            raw = None
        fields = {k: v for k, v in raw.items() if k in JobManifest.model_fields} if isinstance(raw, dict) else {}
        required = {"input_key": "", "input_name": ""}
        for _ in range(len(fields) + 1):
            try:
                job = JobManifest.model_validate({**required, **fields, "id": self.job_id})
                break
            except ValidationError as exc:
                bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
                fields = {k: v for k, v in fields.items() if k not in bad} if bad else {}
        else:  # pragma: no cover - every field dropped always validates
            job = JobManifest(id=self.job_id, **required)
        job.state = JobState.failed
        job.owner, job.lease_until = "", None
        job.error = JobError(stage=JOBS_STAGE, code=INVALID_MANIFEST,
                             message=f"the job's record {manifest_key(self.job_id)} fails validation: {self.reason}")
        return job


def validation_reason(error: ValidationError, most: int = 3) -> str:
    """A one-line summary of a pydantic validation error: ``field.path: message (got value)``."""
    parts = []
    for e in error.errors()[:most]:
        where = ".".join(str(p) for p in e["loc"]) or "manifest"
        got = e.get("input")
        shown = f" (got {got!r})" if isinstance(got, (int, float, str, bool)) and len(repr(got)) <= 40 \
            and e["type"] != "json_invalid" else ""
        parts.append(f"{where}: {e['msg']}{shown}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
