"""The REST API's response models, built from manifests (what clients see, not how it is stored)."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictBool

from ..jobs.manifest import JobError, JobManifest, JobOptions, JobState, StageProgress, VideoSummary, expires_at
from .api_keys import KEY_NAME

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
    user: str = Field("", description="who the job belongs to: key:<name> (an API key's name) or oidc:<subject>")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = Field(None, description="when the job and all its files are deleted "
                                                          "(HPE3D_RETENTION_DAYS after submission)")

    @classmethod
    def of(cls, job: JobManifest, retention_days: float | None = None) -> "JobView":
        base = f"{API}/jobs/{job.id}"
        artifacts = [ArtifactLink(name=name, url=f"{base}/artifacts/{name}", content_type=a.content_type,
                                  size_bytes=a.size_bytes) for name, a in sorted(job.artifacts.items())]
        return cls(id=job.id, state=job.shown_state(), attempt=job.attempt, input_name=job.input_name, input_bytes=job.input_bytes,
                   options=job.options, progress=job.progress, error=job.error, warnings=job.warnings, video=job.video,
                   links=JobLinks(self=base, events=f"{base}/events", artifacts=artifacts), user=job.user,
                   created_at=job.created_at, updated_at=job.updated_at,
                   expires_at=expires_at(job.created_at, retention_days) if retention_days else None)


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last page")


class Problem(BaseModel):
    """Every error answer: a message a person can act on."""

    detail: str


class QuotaProblem(BaseModel):
    """A 429 answer (RFC 9457 problem details): which per-owner limit was reached. Nothing already
    stored was touched; ``Retry-After`` says when to try again."""

    type: str = "urn:hpe3d:problem:quota-exceeded"
    title: str = "Quota exceeded"
    status: int = 429
    detail: str
    limit: str = Field(description="the setting of the limit reached, e.g. HPE3D_QUOTA_JOBS_IN_FLIGHT")
    allowed: int = Field(description="the limit (jobs, uploads per hour or MB)")
    used: int = Field(description="what the owner uses now, in the limit's unit")
    retry_after_s: int


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

class Whoami(BaseModel):
    """The caller as the API knows them."""

    user: str = Field(description="owner of the jobs this caller submits (empty with HPE3D_AUTH=off)")
    admin: bool = Field(description="an admin sees every job and manages keys")
    auth: bool = Field(description="false when the server runs with HPE3D_AUTH=off")
    session_expires_at: datetime | None = Field(None, description="when the page's sign-in session ends")
    retention_days: float = Field(description="how long jobs are kept (HPE3D_RETENTION_DAYS)")


class KeyView(BaseModel):
    """An API key as listed: never the key itself."""

    id: str
    name: str
    admin: bool
    created_at: str
    revoked_at: str | None = None


class KeyCreated(KeyView):
    key: str = Field(description="the key; shown only in this answer")


class KeyList(BaseModel):
    keys: list[KeyView]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=KEY_NAME.pattern, description="who the key is for; keys with one name share their jobs")
    admin: StrictBool = Field(False, description="an admin key sees every job and manages keys")
