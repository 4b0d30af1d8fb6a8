"""``/v1/live``: the live WebSocket (webcam frames in, 2D + 3D + joint angles per frame out).

OpenAPI cannot describe a WebSocket; the HTTP ``GET`` of the same path is documented instead: it
answers 426 (Upgrade Required) and its description is the protocol (``live/protocol.py``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, WebSocket
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.common.live_limits import LIVE_STREAMS_PER_REPLICA

from ..authentication import AuthUnavailable, NotAuthenticated, authenticate, require_caller
from ..dependencies import ApiState
from ..live.protocol import CLOSE_POLICY, LiveOptions
from ..live.session import LiveSession
from ..problems import AUTH_ERRORS, problem
from ..views import API, Problem

router = APIRouter(tags=["live"])

LIVE_PROTOCOL = f"""Open a WebSocket to `{API}/live?max_persons=1` (`ws://` or `wss://`; options as query
parameters: `max_persons` 0..16, 0 = the server default; `focal_px` the camera's focal length in pixels
of the frames sent, 0 = a 57.5 degree field of view across the longer side).

**Sign-in**: the opening request carries the API key as every route takes it (`Authorization: Bearer
<key>` or `X-API-Key`) or the page's session cookie; without one the server sends an `error` and closes
with 1008. A recording becomes a job of that caller, under the same quotas as an upload.

**Client to server.** Each frame is one *binary* message: 8 bytes of capture time in milliseconds on
the client's own clock (little-endian IEEE-754 double, e.g. `performance.now()`), then the JPEG (640 px
on the longer side is plenty). JSON text messages `{{"type": "record_start"}}` and
`{{"type": "record_stop"}}` record the session.

**Server to client**, JSON text messages with a `type`:
- `ready`: `max_persons`, `max_record_bytes`, `angles` (name, unit, sign convention of every angle);
- `frame`, one per frame answered, in order: `frame` (its number in the session, from 0),
  `capture_ms` (as sent: the client's latency is its clock now minus this), `width`, `height`,
  `persons` [{{`track_id`, `keypoints_2d` COCO-17 [x, y, score] in pixels of the JPEG,
  `keypoints_3d` Human3.6M-17 [x, y, z] metres (y up, floor y = 0, z towards the camera, x and z of
  the pelvis from a pinhole fit of this frame), `keypoints_3d_root_relative`, `angles_deg` and
  `angle_confidence` (null = undefined; no ankle angles live), `window_frames`}}], `timings_ms`
  (`waiting`, `pose2d`, `pose2d_call`, `lift3d`, `lift3d_call`, `server`: receipt to answer),
  `received`, `answered`, `dropped`, `recording`;
- `recording` (recording started), `recorded` (`job_id`, `url` of its page, `api_url`, `frames`,
  `fps`: the recording as a job, submitted as an upload is), `error` (`detail`).

**Back-pressure**: one frame is processed at a time and one waits; a frame arriving while one waits
replaces it (counted in `dropped`), so a client sending faster than the server answers sees frames
dropped, never a growing delay. The 2D is the causal, per-frame kind (BlazePose tracking kept for the
session) and the 3D the causal GAST-Net (its frame and the 26 before it). Closing the socket ends the
session and frees everything it held (a recording not stopped is discarded). Close codes: 1007 a frame
the 2D stage could not read, 1008 bad options, 1011 a stage failed, 1013 a stage is down or full
({LIVE_STREAMS_PER_REPLICA} live streams per stage replica)."""


def live_api_state(websocket: WebSocket) -> ApiState:
    return websocket.app.state.api


@router.websocket(f"{API}/live")
async def live(websocket: WebSocket, api: ApiState = Depends(live_api_state)) -> None:
    await websocket.accept()
    try:   # the same sign-in as every route: a key in the opening request's headers, or the page's cookie
        caller = await authenticate(websocket)
    except (NotAuthenticated, AuthUnavailable) as exc:
        await websocket.send_json({"type": "error", "detail": str(exc)})
        await websocket.close(CLOSE_POLICY, "not signed in")
        return
    try:
        options = LiveOptions.model_validate(dict(websocket.query_params))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        await websocket.send_json({"type": "error", "detail": f"invalid options: {problems}"})
        await websocket.close(CLOSE_POLICY, "invalid options")
        return
    await LiveSession(websocket, api, options, caller).run()


@router.get(f"{API}/live", status_code=426, response_model=Problem, dependencies=[Depends(require_caller)],
            summary="Live 2D + 3D from a camera, over a WebSocket (this HTTP GET only says so)",
            description=LIVE_PROTOCOL,
            responses={426: {"model": Problem, "description": "open a WebSocket on this path instead"}, **AUTH_ERRORS})
async def live_over_http() -> JSONResponse:
    return problem(426, f"{API}/live is a WebSocket: open it with a WebSocket client (see the description in /docs)",
                   {"Upgrade": "websocket", "Connection": "Upgrade"})
