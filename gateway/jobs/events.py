"""A job's events: what the worker publishes on ``hpe3d.jobs.<id>.events`` and the API relays as
Server-Sent Events (``event: progress`` after every change, ``event: done`` once at the end)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from .manifest import JobError, JobManifest, JobState, StageProgress


class ProgressEvent(BaseModel):
    """``event: progress``: the job's state and every stage's progress after a change."""

    job_id: str
    state: JobState
    stage: str = Field("", description="the stage the change is about (decoder, pose2d, lifter3d, renderer)")
    message: str = ""
    progress: dict[str, StageProgress]
    updated_at: datetime | None = None


class DoneEvent(BaseModel):
    """``event: done``: the job's final state (and its error when it failed), with its warnings."""

    job_id: str
    state: JobState
    error: JobError | None = None
    warnings: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class JobEvent:
    name: str  # "progress" or "done"
    payload: ProgressEvent | DoneEvent

    def sse(self) -> str:
        """The Server-Sent Event; a progress event's id is the manifest time it shows, which a client
        that reconnects sends back as ``Last-Event-ID``."""
        stamp = getattr(self.payload, "updated_at", None)
        event_id = f"id: {stamp.isoformat()}\n" if stamp is not None else ""
        return f"event: {self.name}\ndata: {self.payload.model_dump_json()}\n{event_id}\n"

    def to_bytes(self) -> bytes:
        """The NATS message body."""
        return json.dumps({"event": self.name, "data": self.payload.model_dump(mode="json")}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "JobEvent":
        """Raises ``ValueError`` for a body that is not a job event."""
        raw = json.loads(data)
        name = raw.get("event")
        if name == "progress":
            return cls(name, ProgressEvent.model_validate(raw["data"]))
        if name == "done":
            return cls(name, DoneEvent.model_validate(raw["data"]))
        raise ValueError(f"unknown job event {name!r}")


def progress_event(manifest: JobManifest, stage: str = "", message: str = "") -> JobEvent:
    return JobEvent("progress", ProgressEvent(job_id=manifest.id, state=manifest.shown_state(), stage=stage,
                                              message=message, progress=manifest.progress,
                                              updated_at=manifest.updated_at))


def done_event(manifest: JobManifest) -> JobEvent:
    return JobEvent("done", DoneEvent(job_id=manifest.id, state=manifest.state, error=manifest.error,
                                      warnings=manifest.warnings))


def cancelled_event(job_id: str) -> JobEvent:
    """The done event of a job deleted while it ran or waited."""
    return JobEvent("done", DoneEvent(job_id=job_id, state=JobState.cancelled))
