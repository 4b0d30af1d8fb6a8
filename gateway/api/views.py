"""The REST API's response models, built from manifests (what clients see, not how it is stored)."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..jobs.manifest import JobError, JobManifest, JobOptions, JobState, StageProgress, VideoSummary

API = "/v1"


class ArtifactLink(BaseModel):
    name: str
    url: str
    content_type: str
    size_bytes: int


class JobLinks(BaseModel):
    self: str
    events: str
    artifacts: list[ArtifactLink] = Field(default_factory=list)


class JobView(BaseModel):
    """A job as the API shows it."""

    id: str
    input_name: str
    input_bytes: int
    options: JobOptions
    state: JobState = Field(description=(
        "queued, running (a live worker runs it), recovering (its worker stopped answering; another "
        "resumes it), succeeded, failed (POST .../retry runs it again), cancelled"))
    attempt: int = Field(description="1 for the first run; each retry adds one")
    progress: dict[str, StageProgress] = Field(
        description="per stage (decoder, pose2d, lifter3d, renderer): done/total")
    error: JobError | None = None
    warnings: list[str] = Field(default_factory=list, description="facts about the input the user should know")
    video: VideoSummary | None = None
    links: JobLinks
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, job: JobManifest) -> "JobView":
        base = f"{API}/jobs/{job.id}"
        artifacts = [ArtifactLink(name=name, url=f"{base}/artifacts/{name}", content_type=a.content_type,
                                  size_bytes=a.size_bytes) for name, a in sorted(job.artifacts.items())]
        return cls(id=job.id, state=job.shown_state(), attempt=job.attempt, input_name=job.input_name, input_bytes=job.input_bytes,
                   options=job.options, progress=job.progress, error=job.error, warnings=job.warnings, video=job.video,
                   links=JobLinks(self=base, events=f"{base}/events", artifacts=artifacts),
                   created_at=job.created_at, updated_at=job.updated_at)


class JobList(BaseModel):
    jobs: list[JobView]


class Problem(BaseModel):
    """Every error answer: a message a person can act on."""

    detail: str


class UploadRefused(BaseModel):
    """A 422 answer to an upload. ``job`` is there when the upload became a job that failed at once
    (not a video or photo, too long): the job's record, with the reason."""

    detail: str
    job: JobView | None = None


class DependencyState(BaseModel):
    ok: bool


class DependencyStatus(DependencyState):
    detail: str


class PublicReadiness(BaseModel):
    """``ready`` when storage, the job queue, every stage and Triton's models answer; per part only
    whether it does (its address and error stay on the operations port)."""

    ready: bool
    dependencies: dict[str, DependencyState]


class Readiness(BaseModel):
    """``ready`` when storage, the job queue, every stage and Triton's models answer, each part with
    what it answered or why not (addresses, errors): for operators, on the operations port."""

    ready: bool
    dependencies: dict[str, DependencyStatus]

    def public(self) -> PublicReadiness:
        return PublicReadiness(ready=self.ready,
                               dependencies={name: DependencyState(ok=d.ok) for name, d in self.dependencies.items()})
