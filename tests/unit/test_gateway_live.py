"""The live endpoint's pieces that need no server: the frame message format, the bounded recording
and its MP4, and the per-frame answer (angles as the exports compute them)."""
from __future__ import annotations

import io
import struct

import av
import cv2
import numpy as np
import pytest

from gateway.api.live.protocol import LiveOptions, LiveRefused, parse_frame
from gateway.api.live.recording import Recording, RecordingFull, encode_mp4
from gateway.api.live.results import persons_message
from hpe3d.v1 import common_pb2, lifter3d_pb2, pose2d_pb2
from services.common.arrays import to_proto
from services.common.joint_angles import ANGLE_NAMES, joint_angles_batch
from tests.conftest import TEST_DATA


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    with av.open(str(TEST_DATA / "two_people_office_24f.mp4")) as container:
        return [cv2.imencode(".jpg", f.to_ndarray(format="bgr24"))[1].tobytes() for f in container.decode(video=0)]


def test_a_frame_is_a_capture_time_then_a_jpeg(jpegs):
    frame = parse_frame(struct.pack("<d", 1234.5) + jpegs[0], 7)
    assert (frame.index, frame.capture_ms, frame.jpeg) == (7, 1234.5, jpegs[0])
    for bad in (b"", jpegs[0], struct.pack("<d", 1.0) + b"GIF89a..."):
        with pytest.raises(LiveRefused, match="8-byte capture time followed by a JPEG"):
            parse_frame(bad, 0)


def test_options_are_bounded():
    assert LiveOptions.model_validate({"max_persons": "2"}).max_persons == 2
    for bad in ({"max_persons": "17"}, {"max_persons": "-1"}, {"focal_px": "-5"}):
        with pytest.raises(ValueError):
            LiveOptions.model_validate(bad)


def test_a_recording_keeps_frames_up_to_its_limit_and_measures_their_rate(jpegs):
    recording = Recording(limit_bytes=sum(len(j) for j in jpegs[:10]))
    for i in range(10):
        recording.add(jpegs[i], 1000 + i * 40.0)      # 25 frames/s
    with pytest.raises(RecordingFull, match="upload limit"):
        recording.add(jpegs[10], 1400.0)
    assert len(recording.jpegs) == 10 and recording.fps == pytest.approx(25.0)
    recording.clear()
    assert (recording.size, recording.jpegs, recording.fps) == (0, [], 0.0)


def test_a_recording_becomes_an_h264_mp4_at_the_measured_rate(jpegs):
    video = encode_mp4(jpegs, 25.0)
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(video=0))
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == pytest.approx(25.0)
        assert (len(frames), frames[0].width, frames[0].height) == (len(jpegs), 640, 360)
    with pytest.raises(ValueError, match="at least 2 frames"):
        encode_mp4(jpegs[:1], 25.0)
    with pytest.raises(ValueError, match="frame 1 is not a decodable JPEG"):
        encode_mp4([jpegs[0], b"\xff\xd8 broken"], 25.0)


def test_each_person_gets_the_angles_the_exports_compute():
    rng = np.random.default_rng(0)
    world = rng.normal(size=(17, 3)).astype(np.float32)
    keypoints = np.concatenate([rng.uniform(0, 600, (17, 2)), np.full((17, 1), 0.9)], axis=1).astype(np.float32)
    lift = lifter3d_pb2.LiftStreamReply(persons=[lifter3d_pb2.LivePerson3D(
        track_id=4, world=to_proto(world), root_relative=to_proto(world - world[0]), keypoints2d=to_proto(keypoints),
        window_frames=9)])
    (person,) = persons_message(pose2d_pb2.Pose2DStreamReply(poses=common_pb2.FramePoses2D()), lift)
    expected = joint_angles_batch(world[None])
    assert person["track_id"] == 4 and person["window_frames"] == 9
    assert set(person["angles_deg"]) == set(ANGLE_NAMES)
    for name in ANGLE_NAMES:
        value = float(expected[name][0])
        assert person["angles_deg"][name] == (None if np.isnan(value) else pytest.approx(value, abs=0.01))
    assert np.allclose(person["keypoints_3d"], world, atol=1e-4)
    assert persons_message(pose2d_pb2.Pose2DStreamReply(), lifter3d_pb2.LiftStreamReply()) == []
