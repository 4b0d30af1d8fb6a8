"""probe_video on the fixtures: counts equal what decoding yields, rotation, VFR, bad inputs."""
from pathlib import Path

import av
import pytest

from services.common.errors import InvalidInput
from services.decoder.probe import probe_video

DATA = Path(__file__).resolve().parent.parent / "data"


def decodable_frames(path: Path) -> int:
    count = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError:
            pass
    return count


@pytest.mark.parametrize("name", ["two_people_office_24f.mp4", "two_people_office_24f_rot90.mp4",
                                  "vfr_12f.mp4", "nobody_24f.mp4", "truncated.mp4"])
def test_frame_count_equals_decoded_frames(name):
    info = probe_video(str(DATA / name))
    assert info.frame_count == decodable_frames(DATA / name)
    assert len(info.timestamps_s) == info.frame_count
    assert list(info.timestamps_s) == sorted(info.timestamps_s)


def test_plain_clip_facts():
    info = probe_video(str(DATA / "two_people_office_24f.mp4"))
    assert (info.width, info.height, info.frame_count) == (640, 360, 24)
    assert info.fps == pytest.approx(30.0)
    assert info.duration_s == pytest.approx(0.8, abs=1e-6)
    assert info.codec == "h264" and info.rotation_deg == 0 and not info.variable_frame_rate
    assert info.timestamps_s[23] == pytest.approx(23 / 30)


def test_rotated_clip_reports_display_size_and_rotation():
    info = probe_video(str(DATA / "two_people_office_24f_rot90.mp4"))
    # stored 360x640 turned clockwise; the display matrix turns it back by 270 degrees clockwise
    assert (info.width, info.height) == (640, 360)
    assert info.rotation_deg == 270


def test_variable_frame_rate_keeps_real_timestamps():
    info = probe_video(str(DATA / "vfr_12f.mp4"))
    assert info.variable_frame_rate
    expected = [0, 33, 67, 150, 183, 300, 333, 367, 500, 533, 700, 733]
    assert [round(t * 1000) for t in info.timestamps_s] == expected
    assert info.fps == pytest.approx(11 / 0.733, rel=1e-3)


def test_truncated_file_counts_only_decodable_frames():
    info = probe_video(str(DATA / "truncated.mp4"))
    with av.open(str(DATA / "truncated.mp4")) as c:
        claimed = c.streams.video[0].frames
    assert 0 < info.frame_count < claimed


@pytest.mark.parametrize("name", ["not_a_video.mp4", "empty.mp4"])
def test_not_a_video_is_invalid_input_with_reason(name):
    with pytest.raises(InvalidInput, match="not a video: .+"):
        probe_video(str(DATA / name))


def test_audio_only_file_is_invalid_input(tmp_path):
    path = tmp_path / "tone.m4a"
    import numpy as np
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(InvalidInput, match="no video stream"):
        probe_video(str(path))
