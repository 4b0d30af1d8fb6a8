"""decode_segment: ranges, seeking, rotation applied, working size, JPEG content."""
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.common.rotation import apply_rotation, clockwise_from_display_ccw, rotated_size
from services.decoder.segments import decode_segment, working_dimensions

DATA = Path(__file__).resolve().parent.parent / "data"
CLIP = str(DATA / "two_people_office_24f.mp4")


def jpeg(segment, i):
    return cv2.imdecode(np.frombuffer(segment.jpeg[i], np.uint8), cv2.IMREAD_COLOR)


def reference_frames(path):
    with av.open(path) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_working_dimensions_keep_aspect_even_and_never_upscale():
    assert working_dimensions(1920, 1080, 640) == (640, 360)
    assert working_dimensions(1080, 1920, 640) == (360, 640)
    assert working_dimensions(641, 361, 4000) == (640, 360)
    w, h = working_dimensions(1000, 333, 500)
    assert w == 500 and h % 2 == 0 and abs(h - 166) <= 1


def test_rotation_helpers():
    img = np.zeros((2, 4, 3), np.uint8)
    img[0, 0] = 255  # top-left marker
    assert apply_rotation(img, 90).shape == (4, 2, 3) and apply_rotation(img, 90)[0, 1, 0] == 255
    assert apply_rotation(img, 270)[3, 0, 0] == 255
    assert apply_rotation(img, 180)[1, 3, 0] == 255
    assert clockwise_from_display_ccw(90) == 270 and clockwise_from_display_ccw(-90) == 90
    assert clockwise_from_display_ccw(180) == 180 and clockwise_from_display_ccw(0) == 0
    assert rotated_size(360, 640, 90) == (640, 360)
    with pytest.raises(ValueError):
        apply_rotation(img, 45)


def test_segment_in_the_middle_matches_full_decode():
    seg = decode_segment(CLIP, 13, 6, 640)  # GOP 12: seeks to the keyframe at frame 12
    assert (seg.start_frame, len(seg.jpeg), seg.width, seg.height) == (13, 6, 640, 360)
    assert (seg.source_width, seg.source_height) == (640, 360)
    assert seg.timestamps_s[0] == pytest.approx(13 / 30)
    ref = reference_frames(CLIP)
    for i in range(6):
        err = np.abs(jpeg(seg, i).astype(int) - ref[13 + i].astype(int)).mean()
        assert err < 4.0, f"frame {13 + i} differs from the reference by {err:.1f}"
    assert np.abs(jpeg(seg, 0).astype(int) - ref[12].astype(int)).mean() > np.abs(
        jpeg(seg, 0).astype(int) - ref[13].astype(int)).mean()


def test_segment_is_resized_to_working_size():
    seg = decode_segment(CLIP, 0, 3, 320)
    assert (seg.width, seg.height) == (320, 180) and jpeg(seg, 0).shape == (180, 320, 3)


def test_rotation_is_applied_to_frames():
    upright = decode_segment(CLIP, 0, 4, 640)
    rotated = decode_segment(str(DATA / "two_people_office_24f_rot90.mp4"), 0, 4, 640)
    assert (rotated.width, rotated.height) == (640, 360)
    for i in range(4):
        assert np.abs(jpeg(rotated, i).astype(int) - jpeg(upright, i).astype(int)).mean() < 6.0


def test_vfr_segment_keeps_timestamps():
    seg = decode_segment(str(DATA / "vfr_12f.mp4"), 2, 4, 640)
    assert [round(t * 1000) for t in seg.timestamps_s] == [67, 150, 183, 300]


def test_count_beyond_the_end_is_clamped_and_start_beyond_is_refused():
    seg = decode_segment(CLIP, 20, 100, 640)
    assert len(seg.jpeg) == 4
    with pytest.raises(InvalidInput, match="beyond"):
        decode_segment(CLIP, 24, 1, 640)
    with pytest.raises(InvalidInput):
        decode_segment(CLIP, -1, 3, 640)


def test_truncated_video_decodes_up_to_its_last_good_frame():
    from services.decoder.probe import probe_video
    path = str(DATA / "truncated.mp4")
    n = probe_video(path).frame_count
    seg = decode_segment(path, n - 5, 50, 640)
    assert len(seg.jpeg) == 5


def test_not_a_video_segment_is_invalid_input():
    with pytest.raises(InvalidInput, match="not a video"):
        decode_segment(str(DATA / "not_a_video.mp4"), 0, 1, 640)
