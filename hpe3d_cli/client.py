"""A small REST client of the gateway for the CLI: submit, follow the SSE stream, download."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.api.views import JobView
from gateway.jobs.events import DoneEvent, ProgressEvent


class GatewayError(RuntimeError):
    """The gateway refused a request; the message is its explanation."""


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str


def parse_sse(lines: Iterator[str]) -> Iterator[ServerSentEvent]:
    """Events of a ``text/event-stream`` given line by line (comments and ids ignored)."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield ServerSentEvent(event, "\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield ServerSentEvent(event, "\n".join(data))


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))
    except (json.JSONDecodeError, AttributeError):
        return resp.text


class GatewayClient:
    def __init__(self, base_url: str, timeout_s: float = 60.0):
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def submit(self, video: Path, options: dict[str, str] | None = None) -> JobView:
        with open(video, "rb") as f:
            resp = self.http.post("/v1/jobs", files={"file": (video.name, f, "application/octet-stream")},
                                  data=options or {}, timeout=None)
        if resp.status_code != 202:
            raise GatewayError(f"upload refused ({resp.status_code}): {_detail(resp)}")
        return JobView.model_validate(resp.json())

    def job(self, job_id: str) -> JobView:
        resp = self.http.get(f"/v1/jobs/{job_id}")
        if resp.status_code != 200:
            raise GatewayError(f"job {job_id}: {resp.status_code}: {_detail(resp)}")
        return JobView.model_validate(resp.json())

    def follow(self, job_id: str, on_progress: Callable[[ProgressEvent], None]) -> DoneEvent:
        """Stream the job's events until ``done``; returns it."""
        with self.http.stream("GET", f"/v1/jobs/{job_id}/events", timeout=httpx.Timeout(30, read=None)) as resp:
            if resp.status_code != 200:
                raise GatewayError(f"events of job {job_id}: {resp.status_code}")
            for event in parse_sse(resp.iter_lines()):
                if event.event == "progress":
                    on_progress(ProgressEvent.model_validate_json(event.data))
                elif event.event == "done":
                    return DoneEvent.model_validate_json(event.data)
        raise GatewayError(f"the event stream of job {job_id} ended before the job did")

    def download_artifacts(self, job: JobView, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for artifact in job.links.artifacts:
            path = out_dir / Path(artifact.name).name
            with self.http.stream("GET", artifact.url, timeout=httpx.Timeout(30, read=300)) as resp:
                if resp.status_code != 200:
                    raise GatewayError(f"download {artifact.name}: {resp.status_code}")
                with open(path, "wb") as f:
                    for chunk in resp.iter_bytes(1024 * 1024):
                        f.write(chunk)
            paths.append(path)
        return paths
