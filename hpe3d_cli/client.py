"""A small REST client of the gateway for the CLI: submit, follow the SSE stream, download, and the
admin's key routes. It sends its API key as ``Authorization: Bearer``, and rides out a restart of
the API replica it talks to: reads are retried with back-off, the event stream is reopened with
``Last-Event-ID``, a download starts again, for up to ``outage_s`` of the gateway not answering."""
from __future__ import annotations

import json
from urllib.parse import quote
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.api.lifter_weights import LifterWeightsView
from gateway.api.views import JobView, KeyCreated, KeyView
from gateway.jobs.events import DoneEvent, ProgressEvent

RETRY_STATUSES = (502, 503, 504)
FIRST_WAIT_S, MAX_WAIT_S = 0.5, 8.0


class GatewayError(RuntimeError):
    """The gateway refused a request; the message is its explanation."""


class GatewayAway(GatewayError):
    """The gateway did not answer for longer than the client waits."""


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str = ""


def parse_sse(lines: Iterator[str]) -> Iterator[ServerSentEvent]:
    """Events of a ``text/event-stream`` given line by line (comments ignored)."""
    event, data, event_id = "message", [], ""
    for line in lines:
        if line == "":
            if data:
                yield ServerSentEvent(event, "\n".join(data), event_id)
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
            elif name == "id":
                event_id = value
    if data:
        yield ServerSentEvent(event, "\n".join(data), event_id)


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))
    except (json.JSONDecodeError, AttributeError):
        return resp.text


class GatewayClient:
    def __init__(self, base_url: str, key: str = "", timeout_s: float = 60.0, outage_s: float = 120.0):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)
        self.outage_s = outage_s

    def close(self) -> None:
        self.http.close()

    # -- retrying -------------------------------------------------------------------------------
    def _patiently(self, what: str, attempt: Callable[[], httpx.Response | None]):
        """Run ``attempt`` until it returns a response that is not 502/503/504; connection errors
        and those statuses are waited out with back-off for up to ``outage_s``."""
        deadline = time.monotonic() + self.outage_s
        wait = FIRST_WAIT_S
        while True:
            try:
                resp = attempt()
                if resp is None or resp.status_code not in RETRY_STATUSES:
                    return resp
                reason = f"{resp.status_code}: {_detail(resp)}"
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + wait > deadline:
                raise GatewayAway(f"{what}: the gateway did not answer for {self.outage_s:.0f} s ({reason})")
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)

    def _get(self, path: str, **kwargs) -> httpx.Response:
        return self._patiently(f"GET {path}", lambda: self.http.get(path, **kwargs))

    # -- jobs -----------------------------------------------------------------------------------
    def submit(self, video: Path, options: dict[str, str] | None = None) -> JobView:
        """Upload once: a refused or broken upload is not sent again (it could make a second job),
        except when the connection could not even be made."""
        def post() -> httpx.Response:
            with open(video, "rb") as f:
                return self.http.post("/v1/jobs", files={"file": (video.name, f, "application/octet-stream")},
                                      data=options or {}, timeout=None)
        deadline = time.monotonic() + self.outage_s
        while True:
            try:
                resp = post()
                break
            except httpx.ConnectError as exc:
                if time.monotonic() > deadline:
                    raise GatewayAway(f"upload: the gateway cannot be reached: {exc}") from exc
                time.sleep(FIRST_WAIT_S)
        if resp.status_code != 202:
            raise GatewayError(f"upload refused ({resp.status_code}): {_detail(resp)}")
        return JobView.model_validate(resp.json())

    def job(self, job_id: str) -> JobView:
        resp = self._get(f"/v1/jobs/{job_id}")
        if resp.status_code != 200:
            raise GatewayError(f"job {job_id}: {resp.status_code}: {_detail(resp)}")
        return JobView.model_validate(resp.json())

    def follow(self, job_id: str, on_progress: Callable[[ProgressEvent], None]) -> DoneEvent:
        """Stream the job's events until ``done``; returns it. A stream that breaks (the replica
        restarts) is reopened with ``Last-Event-ID``, so nothing seen is told twice."""
        last_id = ""
        failing_since: float | None = None
        wait = FIRST_WAIT_S
        while True:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                      timeout=httpx.Timeout(30, read=None)) as resp:
                    if resp.status_code not in RETRY_STATUSES:
                        if resp.status_code != 200:
                            resp.read()
                            raise GatewayError(f"events of job {job_id}: {resp.status_code}: {_detail(resp)}")
                        failing_since, wait = None, FIRST_WAIT_S  # it answers
                        for event in parse_sse(resp.iter_lines()):
                            last_id = event.id or last_id
                            if event.event == "progress":
                                on_progress(ProgressEvent.model_validate_json(event.data))
                            elif event.event == "done":
                                return DoneEvent.model_validate_json(event.data)
                reason = "the event stream ended before the job did"
            except httpx.TransportError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            failing_since = failing_since or time.monotonic()
            if time.monotonic() + wait > failing_since + self.outage_s:
                raise GatewayAway(f"events of job {job_id}: the gateway did not answer for {self.outage_s:.0f} s "
                                  f"({reason})")
            time.sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)

    def download_artifacts(self, job: JobView, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for artifact in job.links.artifacts:
            path = out_dir / Path(artifact.name).name

            def fetch(url: str = artifact.url, path: Path = path) -> httpx.Response:
                with self.http.stream("GET", url, timeout=httpx.Timeout(30, read=300)) as resp:
                    if resp.status_code == 200:
                        with open(path, "wb") as f:
                            for chunk in resp.iter_bytes(1024 * 1024):
                                f.write(chunk)
                    else:
                        resp.read()
                    return resp
            resp = self._patiently(f"download {artifact.name}", fetch)
            if resp.status_code != 200:
                raise GatewayError(f"download {artifact.name}: {resp.status_code}: {_detail(resp)}")
            paths.append(path)
        return paths

    # -- keys (an admin key) ------------------------------------------------------------------------
    def create_key(self, name: str, admin: bool = False) -> KeyCreated:
        resp = self.http.post("/v1/keys", json={"name": name, "admin": admin})
        if resp.status_code != 201:
            raise GatewayError(f"key not made ({resp.status_code}): {_detail(resp)}")
        return KeyCreated.model_validate(resp.json())

    def list_keys(self) -> list[KeyView]:
        resp = self._get("/v1/keys")
        if resp.status_code != 200:
            raise GatewayError(f"keys not listed ({resp.status_code}): {_detail(resp)}")
        return [KeyView.model_validate(k) for k in resp.json()["keys"]]

    def revoke_key(self, key_id: str) -> None:
        resp = self.http.delete(f"/v1/keys/{key_id}")
        if resp.status_code != 204:
            raise GatewayError(f"key {key_id} not revoked ({resp.status_code}): {_detail(resp)}")

    # -- lifter weights (the caller's own and the shipped ones) -----------------------------------------
    def list_lifter_weights(self) -> list[LifterWeightsView]:
        resp = self._get("/v1/lifter-weights")
        if resp.status_code != 200:
            raise GatewayError(f"lifter weights not listed ({resp.status_code}): {_detail(resp)}")
        return [LifterWeightsView.model_validate(w) for w in resp.json()["weights"]]

    def upload_lifter_weights(self, name: str, weights: Path, card: Path | None = None) -> LifterWeightsView:
        files = {"weights": (weights.name, weights.read_bytes(), "application/octet-stream")}
        if card is not None:
            files["card"] = (card.name, card.read_bytes(), "text/markdown")
        resp = self._patiently("upload lifter weights",
                               lambda: self.http.post("/v1/lifter-weights", data={"name": name}, files=files))
        if resp.status_code != 201:
            raise GatewayError(f"lifter weights not uploaded ({resp.status_code}): {_detail(resp)}")
        return LifterWeightsView.model_validate(resp.json())

    def delete_lifter_weights(self, name: str) -> None:
        resp = self.http.delete(f"/v1/lifter-weights/{quote(name, safe='')}")
        if resp.status_code != 204:
            raise GatewayError(f"lifter weights {name} not deleted ({resp.status_code}): {_detail(resp)}")
