"""Fan-out of job events to Server-Sent-Events subscribers inside one gateway process."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from pydantic import BaseModel, Field

from .manifest import JobError, JobManifest, JobState, StageProgress


class ProgressEvent(BaseModel):
    """``event: progress``: the job's state and every stage's progress after a change."""

    job_id: str
    state: JobState
    stage: str = ""
    message: str = ""
    progress: dict[str, StageProgress]


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
        return f"event: {self.name}\ndata: {self.payload.model_dump_json()}\n\n"


def progress_event(manifest: JobManifest, stage: str = "", message: str = "") -> JobEvent:
    return JobEvent("progress", ProgressEvent(job_id=manifest.id, state=manifest.state, stage=stage,
                                              message=message, progress=manifest.progress))


def done_event(manifest: JobManifest) -> JobEvent:
    return JobEvent("done", DoneEvent(job_id=manifest.id, state=manifest.state, error=manifest.error,
                                      warnings=manifest.warnings))


class EventHub:
    """Subscribers get every event published for their job after they subscribed."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[JobEvent]]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Queue[JobEvent]:
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._queues[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[JobEvent]) -> None:
        queues = self._queues.get(job_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[job_id]

    def publish(self, job_id: str, event: JobEvent) -> None:
        for queue in self._queues.get(job_id, ()):
            queue.put_nowait(event)
