"""One ``/v1/live`` WebSocket session: frames in, 2D + 3D + angles out, with back-pressure and recording.

Two tasks share the session. The receiver reads the socket as fast as the client sends: a frame
goes into the one waiting slot (a frame already waiting there is replaced and counted as dropped),
and into the recording while one runs. The processor takes the waiting frame, runs it through the
two stage streams (``stages.LiveStages``) and sends its answer; so at most one frame is in flight
and one waits, whatever the client sends: the machine's pace decides which frames are answered,
never a queue. When the client goes away (or a stage fails) both tasks stop, both stage streams are
cancelled and every buffer is dropped; a recording not yet stopped is discarded.

``record_start`` starts keeping the JPEGs received (up to ``HPE3D_MAX_UPLOAD_MB``); ``record_stop``
(or reaching the limit) encodes them into an MP4 at the measured capture rate and submits it as a
job through the upload's own path (``submission.start_job``), answering ``recorded`` with its id.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timezone

import grpc
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ...jobs.job_errors import JobFailed
from ...jobs.manifest import JobManifest, JobOptions, input_key, new_job_id
from .. import metrics
from ..authentication import Caller
from ..dependencies import ApiState
from ..submission import start_job
from ..views import API
from .protocol import (CLOSE_INVALID_DATA, CLOSE_NORMAL, CLOSE_SERVER_ERROR, CLOSE_TRY_LATER, CONTROL_TYPES,
                       LiveFrame, LiveOptions, LiveRefused, parse_frame)
from .recording import Recording, RecordingFull, encode_mp4
from .results import angle_descriptions, persons_message
from .stages import LiveStages, StageStreamEnded

log = logging.getLogger(__name__)

_CLOSE_FOR = {grpc.StatusCode.INVALID_ARGUMENT: CLOSE_INVALID_DATA, grpc.StatusCode.UNAVAILABLE: CLOSE_TRY_LATER,
              grpc.StatusCode.RESOURCE_EXHAUSTED: CLOSE_TRY_LATER}


class LiveSession:
    def __init__(self, websocket: WebSocket, api: ApiState, options: LiveOptions, caller: Caller):
        self.websocket = websocket
        self.api = api
        self.caller = caller
        self.options = options
        self.received = self.answered = self.dropped = self.refused = 0
        self._waiting: LiveFrame | None = None
        self._waiting_since = 0.0
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self.recording: Recording | None = None
        self._finishing: set[asyncio.Task] = set()
        self._closing: list[Recording] = []   # stopped recordings not yet made into a job
        self._buffered = 0          # bytes this session has added to LIVE_BUFFERED_BYTES
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""

    # -- bookkeeping ---------------------------------------------------------------------------
    def _account(self) -> None:
        held = (len(self._waiting.jpeg) if self._waiting else 0) + (self.recording.size if self.recording else 0)
        held += sum(r.size for r in self._closing)
        metrics.LIVE_BUFFERED_BYTES.inc(held - self._buffered)
        self._buffered = held

    async def _send(self, message: dict) -> None:
        async with self._send_lock:
            if self.websocket.client_state == WebSocketState.CONNECTED:
                await self.websocket.send_text(json.dumps(message, allow_nan=False))

    # -- the session ---------------------------------------------------------------------------
    async def run(self) -> None:
        metrics.LIVE_SESSIONS.inc()
        stages = LiveStages(self.api.clients, self.options.max_persons, self.options.focal_px)
        try:
            await self._send({"type": "ready", "max_persons": self.options.max_persons,
                              "max_record_bytes": self._record_limit(), "angles": angle_descriptions()})
            tasks = {asyncio.create_task(self._receive(), name="live-receive"),
                     asyncio.create_task(self._process(stages), name="live-process")}
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()
        except WebSocketDisconnect:
            pass
        except Exception:  # noqa: BLE001 - a send to a socket that closed meanwhile, or a bug: end the session
            log.exception("live session failed")
            self.close_code, self.close_reason = CLOSE_SERVER_ERROR, "the session failed"
        finally:
            stages.close()
            self._waiting = None
            if self.recording is not None:   # never stopped: discarded with the session
                self.recording.clear()
                self.recording = None
            self._account()
            if self._finishing:              # a recording stopped by the client still becomes its job
                await asyncio.gather(*self._finishing, return_exceptions=True)
            metrics.LIVE_BUFFERED_BYTES.dec(self._buffered)
            self._buffered = 0
            metrics.LIVE_SESSIONS.dec()
            if self.websocket.client_state == WebSocketState.CONNECTED:
                await self.websocket.close(self.close_code, self.close_reason[:120])
            log.info("live session ended: %d frames received, %d answered, %d dropped, %d refused",
                     self.received, self.answered, self.dropped, self.refused)

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._on_frame(message["bytes"])
            elif message.get("text") is not None:
                await self._on_control(message["text"])

    async def _on_frame(self, data: bytes) -> None:
        index = self.received
        self.received += 1
        metrics.LIVE_FRAMES.labels("received").inc()
        try:
            frame = parse_frame(data, index)
        except LiveRefused as exc:
            self.refused += 1
            metrics.LIVE_FRAMES.labels("refused").inc()
            await self._send({"type": "error", "detail": str(exc)})
            return
        if self.recording is not None:
            try:
                self.recording.add(frame.jpeg, frame.capture_ms)
            except RecordingFull as exc:
                self._stop_recording(f"{exc}: stopped")
        if self._waiting is not None:
            self.dropped += 1
            metrics.LIVE_FRAMES.labels("dropped").inc()
        self._waiting, self._waiting_since = frame, time.perf_counter()
        self._account()
        self._wake.set()

    async def _on_control(self, text: str) -> None:
        try:
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind not in CONTROL_TYPES:
            await self._send({"type": "error", "detail": f"unknown message {text[:80]!r}: send JSON with "
                                                         f"\"type\" one of {', '.join(CONTROL_TYPES)}"})
        elif kind == "record_start":
            if self.recording is not None:
                await self._send({"type": "error", "detail": "already recording"})
                return
            self.recording = Recording(self._record_limit())
            await self._send({"type": "recording", "from_frame": self.received,
                              "max_record_bytes": self.recording.limit_bytes})
        elif self.recording is None:
            await self._send({"type": "error", "detail": "record_stop without record_start"})
        else:
            self._stop_recording("stopped")

    async def _process(self, stages: LiveStages) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            frame, waited = self._waiting, time.perf_counter() - self._waiting_since
            self._waiting = None
            self._account()
            if frame is None:
                continue
            started = time.perf_counter()
            try:
                answer = await stages.process(frame)
            except grpc.aio.AioRpcError as exc:
                await self._stage_failed(f"{exc.code().name}: {exc.details()}", _CLOSE_FOR.get(exc.code(),
                                                                                               CLOSE_SERVER_ERROR))
                return
            except StageStreamEnded as exc:
                await self._stage_failed(str(exc), CLOSE_TRY_LATER)
                return
            persons = persons_message(answer.pose2d, answer.lift)
            self.answered += 1
            metrics.LIVE_FRAMES.labels("answered").inc()
            await self._send({
                "type": "frame", "frame": frame.index, "capture_ms": frame.capture_ms,
                "width": answer.pose2d.width, "height": answer.pose2d.height, "persons": persons,
                "timings_ms": {"waiting": round(waited * 1000, 2),
                               "pose2d": round(answer.pose2d.estimate_ms, 2),
                               "pose2d_call": round(answer.pose2d_call_ms, 2),
                               "lift3d": round(answer.lift.lift_ms, 2),
                               "lift3d_call": round(answer.lift_call_ms, 2),
                               "server": round((time.perf_counter() - started + waited) * 1000, 2)},
                "received": self.received, "answered": self.answered, "dropped": self.dropped,
                "recording": self.recording is not None})

    async def _stage_failed(self, detail: str, code: int) -> None:
        log.warning("live session stopped: %s", detail)
        self.close_code, self.close_reason = code, detail
        await self._send({"type": "error", "detail": f"a stage failed, the session ends: {detail}"})

    # -- recording -------------------------------------------------------------------------------
    def _record_limit(self) -> int:
        return self.api.settings.max_upload_mb * 1024 * 1024

    def _stop_recording(self, reason: str) -> None:
        recording, self.recording = self.recording, None
        self._closing.append(recording)
        task = asyncio.create_task(self._finish_recording(recording, reason), name="live-recording")
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish_recording(self, recording: Recording, reason: str) -> None:
        try:
            frames, fps = len(recording.jpegs), recording.fps
            try:
                video = await asyncio.to_thread(encode_mp4, recording.jpegs, fps)
            except ValueError as exc:
                await self._send({"type": "error", "detail": f"the recording cannot become a job: {exc}"})
                return
            recording.clear()
            self._account()
            job = await self._submit(video)
            metrics.LIVE_RECORDINGS.inc()
            message = {"type": "recorded", "reason": reason, "job_id": job.id, "url": f"/jobs/{job.id}",
                       "api_url": f"{API}/jobs/{job.id}", "frames": frames, "fps": round(fps, 3),
                       "state": job.state.value}
            if job.error:
                message["detail"] = job.error.message
            await self._send(message)
        except Exception as exc:  # noqa: BLE001 - storage or queue down: say so, the live view goes on
            log.exception("a live recording could not be submitted")
            await self._send({"type": "error", "detail": f"the recording could not be submitted: {exc}"})
        finally:
            recording.clear()
            self._closing.remove(recording)
            self._account()

    async def _submit(self, video: bytes) -> JobManifest:
        api = self.api
        job_id = new_job_id()
        name = f"live-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.mp4"
        key = input_key(job_id, name)
        await api.quotas.check_jobs_in_flight(self.caller)      # the limits of an upload (QuotaExceeded)
        await api.quotas.check_uploads_per_hour(self.caller)
        await api.quotas.check_stored_bytes(self.caller, adding=len(video))
        await asyncio.to_thread(api.store.put_bytes, key, video, "video/mp4")
        await api.quotas.record_upload(self.caller)
        metrics.UPLOAD_BYTES.inc(len(video))
        job = JobManifest(id=job_id, options=JobOptions(max_persons=self.options.max_persons), input_key=key,
                          input_name=name, input_bytes=len(video), user=self.caller.user)
        try:
            await start_job(api, job)
        except JobFailed:
            pass                      # saved as failed with the reason: the client gets its id and reason
        return job
