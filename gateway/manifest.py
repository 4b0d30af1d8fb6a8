"""The job manifest: everything the gateway knows about one job, stored as ``jobs/{id}/job.json``.

The manifest is the single source of truth for a job. The gateway rewrites it after every stage
(and on segment progress), lists them to answer ``GET /v1/jobs`` and reads the unfinished ones on
start-up to resume them.
"""
from __future__ import annotations

import enum
import re
import uuid
from datetime import datetime, timezone

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
JOBS_PREFIX = "jobs/"
STAGE_NAMES = ("decode", "pose2d", "lift", "render")


class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class JobOptions(BaseModel):
    """What the caller may choose per job; 0 means the server default from the settings."""

    max_persons: int = Field(0, ge=0, le=16, description="most persons tracked per frame; 0 = server default")
    working_size: int = Field(0, ge=0, le=4096, description="longer side of decoded frames in pixels; 0 = server default")
    render: bool = Field(True, description="encode the rendered MP4 (false: exports only)")


class StageProgress(BaseModel):
    done: int = 0
    total: int = 0


class JobError(BaseModel):
    """Why a job failed: the stage, a stable code and a message a person can act on."""

    stage: str
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
    key: str
    content_type: str = "application/octet-stream"
    size_bytes: int = 0


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
        default_factory=lambda: {name: StageProgress() for name in STAGE_NAMES})
    video: VideoSummary | None = None
    error: JobError | None = None
    warnings: list[str] = Field(default_factory=list, description="facts about the input the user should know "
                                                                  "(e.g. frames missing from a truncated file)")
    segment_count: int = 0
    poses2d_keys: list[str] = Field(default_factory=list)
    poses3d_key: str = ""
    artifacts: dict[str, StoredArtifact] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)

    @property
    def key(self) -> str:
        return manifest_key(self.id)

    def touch(self) -> None:
        self.updated_at = _now()

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> "JobManifest":
        return cls.model_validate_json(data)


def job_prefix(job_id: str) -> str:
    return f"{JOBS_PREFIX}{job_id}/"


def manifest_key(job_id: str) -> str:
    return f"{job_prefix(job_id)}job.json"


def segment_keys(job_id: str, index: int) -> tuple[str, str]:
    """(frames key, poses2d key) of one segment."""
    base = f"{job_prefix(job_id)}segments/{index:05d}/"
    return base + "frames.pb", base + "poses2d.pb"


def poses3d_key(job_id: str) -> str:
    return f"{job_prefix(job_id)}poses3d.pb"


def output_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}output/"
