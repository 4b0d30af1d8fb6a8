"""``/v1/live`` on the whole local stack (SeaweedFS, NATS, the Triton host, the four stages, a worker,
the gateway): frames of the test clip in over a real WebSocket, 2D + 3D + angles back; frames
dropped, not queued, when sent faster than answered; a client that goes away frees its session
and its stage streams; a recorded session becomes a job whose poses.json has the recorded frames."""
from __future__ import annotations

import json
import re
import struct
import time

import av
import cv2
import httpx
import numpy as np
import pytest

from services.common.joint_angles import ANGLE_NAMES
from services.common.live_limits import LIVE_STREAMS_PER_REPLICA
from tests.conftest import TEST_DATA

pytestmark = pytest.mark.e2e

websockets_sync = pytest.importorskip("websockets.sync.client", reason="websockets is not installed (requirements.txt)")
CLIP = TEST_DATA / "two_people_office_24f.mp4"
FRAME_MS = 1000 / 30


@pytest.fixture(scope="module")
def stack():
    from hpe3d_cli.local_stack import LocalStack
    with LocalStack(startup_timeout_s=240) as running:
        yield running


@pytest.fixture(scope="module")
def api(stack):
    with httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {stack.api_key}"},
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    with av.open(str(CLIP)) as container:
        return [cv2.imencode(".jpg", f.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
                for f in container.decode(video=0)]


def frame_message(jpeg: bytes, capture_ms: float) -> bytes:
    return struct.pack("<d", capture_ms) + jpeg


class LiveClient:
    """A WebSocket to /v1/live; ``messages`` of a type are read in order, others kept aside."""

    def __init__(self, stack, query: str = "max_persons=1"):
        url = stack.gateway_url.replace("http://", "ws://") + f"/v1/live?{query}"
        self.ws = websockets_sync.connect(url, max_size=None, open_timeout=30,
                                          additional_headers={"Authorization": f"Bearer {stack.api_key}"})
        self.ready = self.next("ready")

    def next(self, kind: str | None = None, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if kind is None or message["type"] == kind or message["type"] == "error":
                return message

    def send_frame(self, jpeg: bytes, capture_ms: float) -> None:
        self.ws.send(frame_message(jpeg, capture_ms))

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def close(self) -> None:
        self.ws.close()


def metric(stack, name: str) -> float:
    text = httpx.get(stack.operations_urls[0] + "/metrics", timeout=30).text   # the API's operations port
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert found, f"no metric {name}"
    return float(found.group(1))


def test_frames_in_2d_3d_and_angles_back(stack, jpegs):
    client = LiveClient(stack)
    try:
        assert client.ready["max_persons"] == 1
        assert [a["name"] for a in client.ready["angles"]] == list(ANGLE_NAMES)
        latencies, answers = [], []
        for i, jpeg in enumerate(jpegs):          # one at a time: nothing waits, nothing is dropped
            sent = time.perf_counter() * 1000
            client.send_frame(jpeg, sent)
            answer = client.next("frame")
            assert answer["type"] == "frame", answer
            latencies.append(time.perf_counter() * 1000 - answer["capture_ms"])
            answers.append(answer)
        assert [a["frame"] for a in answers] == list(range(len(jpegs)))
        assert answers[-1]["dropped"] == 0 and answers[-1]["answered"] == len(jpegs)
        with_person = [a for a in answers if a["persons"]]
        assert len(with_person) >= 20
        person = with_person[-1]["persons"][0]
        assert (with_person[-1]["width"], with_person[-1]["height"]) == (640, 360)
        k2, k3 = np.array(person["keypoints_2d"]), np.array(person["keypoints_3d"])
        assert k2.shape == (17, 3) and k3.shape == (17, 3)
        assert np.all((k2[:, 0] > -50) & (k2[:, 0] < 690))
        assert 1.2 < k3[10, 1] < 2.2, "head top of a standing person, metres above the floor"
        assert k3[0, 2] < -0.5, "in front of the camera"
        assert person["angles_deg"]["left_knee_flexion"] is not None
        assert person["angles_deg"]["left_ankle_dorsiflexion"] is None
        assert person["window_frames"] == min(27, len(with_person))
        assert set(answers[-1]["timings_ms"]) == {"waiting", "pose2d", "pose2d_call", "lift3d", "lift3d_call",
                                                  "server"}
        # the track's 3D moves with the clip (two people walking apart)
        first = np.array(with_person[0]["persons"][0]["keypoints_3d"])
        assert np.abs(k3 - first).max() > 0.05
        print(f"lock-step latency over {len(latencies)} frames: median {np.median(latencies):.0f} ms, "
              f"max {max(latencies):.0f} ms")
    finally:
        client.close()


def test_frames_sent_faster_than_answered_are_dropped_not_queued(stack, jpegs):
    client = LiveClient(stack)
    try:
        total = 60
        for i in range(total):                     # as fast as the socket takes them
            client.send_frame(jpegs[i % len(jpegs)], i * FRAME_MS)
        answers = []
        while not answers or answers[-1]["frame"] != total - 1:
            answer = client.next("frame")
            assert answer["type"] == "frame", answer
            answers.append(answer)
        frames = [a["frame"] for a in answers]
        assert frames == sorted(set(frames)), "answers in order, none twice"
        last = answers[-1]
        assert last["received"] == total
        assert last["answered"] + last["dropped"] == total, "every frame answered or dropped"
        assert last["dropped"] > 0 and last["answered"] < total
        # once every frame had arrived, at most the frame in flight and the one waiting were left to answer
        assert sum(1 for a in answers if a["received"] == total) <= 2
    finally:
        client.close()


def test_a_client_that_goes_away_frees_its_session_and_stage_streams(stack, api, jpegs):
    clients = [LiveClient(stack) for _ in range(LIVE_STREAMS_PER_REPLICA)]
    for c in clients:
        c.send({"type": "record_start"})
        assert c.next("recording")["type"] == "recording"
        for i in range(10):
            c.send_frame(jpegs[i], i * FRAME_MS)
        assert c.next("frame")["type"] == "frame"
    assert metric(stack, "hpe3d_gateway_live_sessions") == LIVE_STREAMS_PER_REPLICA
    assert metric(stack, "hpe3d_gateway_live_buffered_bytes") > 0
    for c in clients:                               # gone mid-recording, frames still in flight
        c.ws.socket.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (metric(stack, "hpe3d_gateway_live_sessions") > 0
                                           or metric(stack, "hpe3d_gateway_live_buffered_bytes") > 0):
        time.sleep(0.2)
    assert metric(stack, "hpe3d_gateway_live_sessions") == 0
    assert metric(stack, "hpe3d_gateway_live_buffered_bytes") == 0
    # the stages let go of the streams too: as many new sessions as a replica takes all get answers
    again = [LiveClient(stack) for _ in range(LIVE_STREAMS_PER_REPLICA)]
    try:
        for c in again:
            c.send_frame(jpegs[0], 0.0)
        for c in again:
            answer = c.next("frame")
            assert answer["type"] == "frame", answer
    finally:
        for c in again:
            c.close()


def test_a_recorded_session_becomes_a_job_with_its_frames(stack, api, jpegs):
    client = LiveClient(stack, "max_persons=2")
    try:
        for i in range(3):                          # not recorded
            client.send_frame(jpegs[i], i * FRAME_MS)
            client.next("frame")
        client.send({"type": "record_start"})
        assert client.next("recording")["type"] == "recording"
        for i, jpeg in enumerate(jpegs):
            client.send_frame(jpeg, 10_000 + i * FRAME_MS)   # captured at 30 frames/s
            assert client.next("frame")["recording"] is True
        client.send({"type": "record_stop"})
        recorded = client.next("recorded")
    finally:
        client.close()
    assert recorded["type"] == "recorded", recorded
    assert recorded["frames"] == len(jpegs) and recorded["fps"] == pytest.approx(30, abs=0.01)
    job_id = recorded["job_id"]
    assert recorded["url"] == f"/jobs/{job_id}"
    deadline = time.monotonic() + 600
    while (job := api.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(1)
    assert job["state"] == "succeeded", job
    assert job["input_name"].startswith("live-") and job["input_name"].endswith(".mp4")
    poses = api.get(f"/v1/jobs/{job_id}/artifacts/poses.json").json()
    assert len(poses["frames"]) == len(jpegs)
    assert poses["video"]["fps"] == pytest.approx(30, abs=0.05)
    assert sum(1 for f in poses["frames"] if f["persons"]) >= 20
    names = {a["name"] for a in job["links"]["artifacts"]}
    assert {"poses.json", "joints3d.csv", "joint_angles.csv", "render.mp4"} <= names
    assert any(n.endswith(".bvh") for n in names)
    assert any(j["id"] == job_id for j in api.get("/v1/jobs").json()["jobs"]), "in the history"


def test_bad_messages_are_refused_and_the_session_goes_on(stack, api, jpegs):
    assert api.get("/v1/live").status_code == 426
    client = LiveClient(stack)
    try:
        client.ws.send(b"\x00" * 8 + b"not a jpeg")
        assert "not an 8-byte capture time followed by a JPEG" in client.next()["detail"]
        client.send({"type": "dance"})
        assert "unknown message" in client.next()["detail"]
        client.send({"type": "record_stop"})
        assert "without record_start" in client.next()["detail"]
        client.send_frame(jpegs[0], 1.0)
        assert client.next("frame")["type"] == "frame"
    finally:
        client.close()
    assert_refused(websockets_sync.connect(stack.gateway_url.replace("http://", "ws://") + "/v1/live?max_persons=99",
                                           additional_headers={"Authorization": f"Bearer {stack.api_key}"}),
                   "max_persons")


def assert_refused(socket, words: str) -> None:
    """The server says why in an error message, then closes ``socket`` with 1008 (policy)."""
    try:
        assert words in json.loads(socket.recv(timeout=30))["detail"]
        with pytest.raises(Exception):
            socket.recv(timeout=30)
        assert socket.close_code == 1008
    finally:
        socket.close()


def test_a_socket_without_a_key_is_refused(stack):
    assert_refused(websockets_sync.connect(stack.gateway_url.replace("http://", "ws://") + "/v1/live"), "API key")


def test_the_live_benchmark_signs_in_and_gets_frames_back(stack, jpegs):
    """bench/live.py's session (the README's figures come from it) against this stack, two persons allowed, for 2 s."""
    import importlib.util

    from tests.conftest import ROOT
    spec = importlib.util.spec_from_file_location("bench_live", ROOT / "bench" / "live.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sent, answers, last = bench.run_session(stack.gateway_url, jpegs, fps=10, seconds=2.0, max_persons=2,
                                            api_key=stack.api_key)
    assert len(sent) == 20 and answers
    assert {m["type"] for m, _ in answers} == {"frame"} and last["persons"]
