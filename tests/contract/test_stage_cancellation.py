"""A stage call that ends early -- its caller cancels it, or its deadline (HPE3D_STAGE_TIMEOUT_S)
passes -- stops the stage's work and writes nothing after (``services.common.cancellation``): real
gRPC servers on loopback, a real S3 store, and for pose2d the real Triton server."""
from __future__ import annotations

import dataclasses
import threading
import time

import av
import cv2
import grpc
import pytest

from hpe3d.v1 import common_pb2, decoder_pb2, decoder_pb2_grpc, pose2d_pb2, pose2d_pb2_grpc
from services.common import grpc_server
from services.pose2d.client import TritonBlazePose
from services.triton.repositories import missing_model_files
from tests.video_fixtures import PEOPLE_CLIP, encode_h264, read_frames

JOB = "cancellation"


class RecordedModels:
    """The real Triton client, with the time of every model call recorded."""

    def __init__(self, models: TritonBlazePose):
        self.models = models
        self.calls: list[float] = []
        self._lock = threading.Lock()

    @property
    def info(self):
        return self.models.info

    def _record(self):
        with self._lock:
            self.calls.append(time.monotonic())

    def detect(self, images):
        self._record()
        return self.models.detect(images)

    def landmarks(self, crops, heatmap=True):
        self._record()
        return self.models.landmarks(crops, heatmap)


def quiet_since(calls: list[float], quiet_s: float, limit_s: float) -> float:
    """Wait until no call was recorded for ``quiet_s``; the time of the last one."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        last = calls[-1] if calls else 0.0
        if time.monotonic() - last >= quiet_s:
            return last
        time.sleep(0.1)
    raise AssertionError(f"the stage still called its models {limit_s} s later")


@pytest.fixture(scope="module")
def long_segment():
    """96 frames (the 24-frame clip four times) as the decoder stores them."""
    with av.open(str(PEOPLE_CLIP)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)] * 4
    h, w = frames[0].shape[:2]
    segment = common_pb2.FrameSegment(start_frame=0, width=w, height=h, source_width=w, source_height=h,
                                      timestamps_s=[i / 30 for i in range(len(frames))])
    segment.jpeg.extend(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames)
    return segment


@pytest.fixture(scope="module")
def pose2d(store, settings, triton_stack):
    if missing_model_files():
        pytest.skip("BlazePose .tflite files absent: run `make models`")
    from services.pose2d.server import register
    stage_settings = dataclasses.replace(settings, triton_url=triton_stack.settings.triton_url)
    models = RecordedModels(TritonBlazePose(stage_settings.triton_url))
    stage = grpc_server.start_server(lambda s: register(s, store, stage_settings, models), ["hpe3d.v1.Pose2D"],
                                     port=0)
    with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
        yield pose2d_pb2_grpc.Pose2DStub(ch), models
    stage.stop(0)


def estimate_request(store, long_segment, name: str) -> pose2d_pb2.EstimateRequest:
    frames = store.put_message(f"jobs/{JOB}/{name}/segment.pb", long_segment)
    return pose2d_pb2.EstimateRequest(
        segment=common_pb2.SegmentRef(job_id=JOB, index=0, start_frame=0, frame_count=len(long_segment.jpeg),
                                      frames=frames),
        output=store.ref(f"jobs/{JOB}/{name}/poses2d.pb"), max_persons=2)


@pytest.mark.contract
@pytest.mark.parametrize("how", ["deadline", "caller cancels"])
def test_pose2d_stops_and_writes_nothing_once_the_call_has_ended(pose2d, store, long_segment, how):
    stub, models = pose2d
    whole = estimate_request(store, long_segment, f"whole-{how.replace(' ', '-')}")
    started = time.monotonic()
    stub.Estimate(whole, timeout=300)
    full_s = time.monotonic() - started
    end_after_s = full_s / 3   # the call ends a third of the way through the segment

    request = estimate_request(store, long_segment, f"ended-{how.replace(' ', '-')}")
    models.calls.clear()
    started = time.monotonic()
    if how == "deadline":
        with pytest.raises(grpc.RpcError) as caught:
            stub.Estimate(request, timeout=end_after_s)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        ended = started + end_after_s
    else:
        call = stub.Estimate.future(request, timeout=300)
        time.sleep(end_after_s)
        assert call.cancel()
        ended = time.monotonic()
    last_call = quiet_since(models.calls, quiet_s=1.0, limit_s=full_s + 10)
    # the work stopped within about one frame of the call's end, far before the whole segment's time
    assert last_call - ended < min(1.0, full_s / 2), (last_call - ended, full_s)
    time.sleep(max(0.0, started + full_s + 1.0 - time.monotonic()))
    assert not store.exists(request.output), "the stage wrote its output after its call had ended"


@pytest.fixture(scope="module")
def long_video(tmp_path_factory, store):
    """The 24-frame clip ten times over, upscaled to 1280x720: a decode of a few seconds here."""
    frames = [cv2.resize(f, (1280, 720)) for f in read_frames(PEOPLE_CLIP)] * 10
    path = encode_h264(tmp_path_factory.mktemp("long") / "long.mp4", frames)
    return store.put_bytes(f"jobs/{JOB}/long.mp4", path.read_bytes(), "video/mp4")


@pytest.fixture(scope="module")
def decoder(store, settings):
    from services.decoder.server import register
    stage = grpc_server.start_server(lambda s: register(s, store, settings), ["hpe3d.v1.Decoder"], port=0)
    with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
        yield decoder_pb2_grpc.DecoderStub(ch)
    stage.stop(0)


@pytest.mark.contract
def test_decoder_writes_no_segment_after_its_deadline(decoder, store, long_video):
    def request(name):
        return decoder_pb2.DecodeRequest(job_id=JOB, video=long_video, start_frame=0, frame_count=240, index=0,
                                         working_size=1280, output=store.ref(f"jobs/{JOB}/{name}.pb"))
    started = time.monotonic()
    decoder.Decode(request("decoded-whole"), timeout=300)   # also downloads the video once
    full_s = time.monotonic() - started
    late = request("decoded-late")
    with pytest.raises(grpc.RpcError) as caught:
        decoder.Decode(late, timeout=full_s / 4)   # the deadline passes a quarter of the way through
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(full_s + 1.0)
    assert not store.exists(late.output), "the decoder wrote its segment after the call's deadline"


@pytest.fixture(scope="module")
def lifter(store, settings):
    """The Lifter3D stage with the shipped weights, and the times of its model's forward passes."""
    from hpe3d.v1 import lifter3d_pb2_grpc
    from services.lifter3d.server import register
    from services.lifter3d.video_lift import load_service_lifter
    model = load_service_lifter(settings.lifter_weights)
    forwards: list[float] = []
    hook = model.model.register_forward_hook(lambda *_: forwards.append(time.monotonic()))
    stage = grpc_server.start_server(lambda s: register(s, store, settings, model), ["hpe3d.v1.Lifter3D"], port=0)
    with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
        yield lifter3d_pb2_grpc.Lifter3DStub(ch), forwards
    stage.stop(0)
    hook.remove()


def walking_people(persons: int, frames: int) -> list[common_pb2.FramePoses2D]:
    """``persons`` upright COCO-17 people side by side in a 1080p frame, swaying, for ``frames`` frames."""
    import numpy as np

    from services.common.arrays import to_proto
    base = np.array([[0, 300], [15, 285], [-15, 285], [30, 295], [-30, 295], [70, 380], [-70, 380],
                     [90, 480], [-90, 480], [100, 570], [-100, 570], [40, 580], [-40, 580], [45, 720],
                     [-45, 720], [50, 860], [-50, 860]], dtype=np.float32)
    out = []
    for f in range(frames):
        people = []
        for p in range(persons):
            kp = np.concatenate([base + [150 + 300 * p + 10 * np.sin(f / 10 + p), 0], np.full((17, 1), 0.9)], axis=1)
            people.append(common_pb2.Person2D(track_id=p, score=0.9, coco17=to_proto(kp)))
        out.append(common_pb2.FramePoses2D(frame_index=f, persons=people))
    return out


@pytest.mark.contract
def test_lifter_stops_between_tracks_and_writes_nothing_after_its_deadline(lifter, store):
    from hpe3d.v1 import lifter3d_pb2
    stub, forwards = lifter
    persons = 6
    frames = walking_people(persons, 200)

    def request(name):
        return lifter3d_pb2.LiftRequest(job_id=JOB, width=1920, height=1080, frames=frames, fps=30,
                                        output=store.ref(f"jobs/{JOB}/{name}.pb"))
    started = time.monotonic()
    updates = list(stub.Lift(request("lifted-whole"), timeout=300))
    full_s = time.monotonic() - started
    assert updates[-1].HasField("result") and len(updates[-1].result.poses.tracks) == persons
    late = request("lifted-late")
    forwards.clear()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:   # the deadline passes before the second track is lifted
        list(stub.Lift(late, timeout=full_s / 10))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(max(0.0, started + full_s + 1.0 - time.monotonic()))
    # one forward pass per track: it stops at the next track instead of lifting every one of them
    assert len(forwards) <= 1, f"{len(forwards)} of {persons} tracks lifted after the call's deadline"
    assert not store.exists(late.output), "the lifter wrote its result after the call's deadline"
