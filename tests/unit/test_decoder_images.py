"""Photos (JPEG, PNG, WebP) are 1-frame inputs: probe says still_image, decode gives the upright
picture (EXIF orientation applied), whatever the stored file is called."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from services.common.errors import InvalidInput
from services.decoder.probe import probe_video
from services.decoder.segments import decode_segment
from tests.video_fixtures import PEOPLE_CLIP, jpeg_with_orientation, read_frames, side_by_side_people


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """Frame 10 of the office clip, 640x360, with a white marker in its top-left corner."""
    image = read_frames(PEOPLE_CLIP)[10].copy()
    image[:20, :40] = 255
    return image


def decoded(segment, i: int = 0) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(segment.jpeg[i], np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize("suffix, codec", [(".jpg", "mjpeg"), (".png", "png"), (".webp", "webp")])
def test_photo_is_a_still_image_of_one_frame(tmp_path, picture, suffix, codec):
    path = tmp_path / f"photo{suffix}"
    assert cv2.imwrite(str(path), picture)
    info = probe_video(str(path))
    assert info.still_image and info.frame_count == 1 and info.announced_frame_count == 1
    assert (info.width, info.height, info.rotation_deg, info.codec) == (640, 360, 0, codec)
    assert info.fps == 0.0 and info.duration_s == 0.0 and info.timestamps_s == (0.0,)
    assert info.warnings == () and not info.variable_frame_rate
    proto = info.to_proto()
    assert proto.still_image and proto.frame_count == 1
    segment = decode_segment(str(path), 0, 128, 320)
    assert len(segment.jpeg) == 1 and (segment.width, segment.height) == (320, 180)
    assert list(segment.timestamps_s) == [0.0]
    small = cv2.resize(picture, (320, 180), interpolation=cv2.INTER_AREA)
    assert np.abs(decoded(segment).astype(int) - small.astype(int)).mean() < 6.0
    with pytest.raises(InvalidInput, match="beyond"):
        decode_segment(str(path), 1, 1, 320)


def test_photo_is_recognised_by_content_not_by_name(tmp_path, picture):
    named = tmp_path / "photo.jpg"
    assert cv2.imwrite(str(named), picture)
    unnamed = tmp_path / "3f2a9c0d"  # the decoder's download cache names files by a hash
    shutil.copy(named, unnamed)
    info = probe_video(str(unnamed))
    assert info.still_image and (info.width, info.height) == (640, 360)


@pytest.mark.parametrize("orientation, rotation_cw", [(6, 90), (3, 180), (8, 270)])
def test_exif_orientation_turns_the_photo_upright(tmp_path, picture, orientation, rotation_cw):
    # store the picture turned the other way, as a phone's sensor does, and tag how to show it
    undo = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
    stored = cv2.rotate(picture, undo[rotation_cw])
    path = jpeg_with_orientation(tmp_path / "phone.jpg", stored, orientation)
    info = probe_video(str(path))
    assert info.rotation_deg == rotation_cw and (info.width, info.height) == (640, 360)
    upright = decoded(decode_segment(str(path), 0, 1, 640))
    assert upright.shape == (360, 640, 3)
    assert upright[:20, :40].mean() > 200 and upright[-20:, -40:].mean() < upright[:20, :40].mean()
    assert np.abs(upright.astype(int) - picture.astype(int)).mean() < 6.0


def test_group_photo_keeps_its_full_size(tmp_path):
    frames = read_frames(PEOPLE_CLIP)
    path = tmp_path / "group.png"
    assert cv2.imwrite(str(path), side_by_side_people(frames, 0, 20))
    info = probe_video(str(path))
    assert info.still_image and (info.width, info.height) == (1280, 360)
    assert len(decode_segment(str(path), 0, 1, 640).jpeg) == 1


def test_damaged_photo_is_invalid_input(tmp_path, picture):
    ok, data = cv2.imencode(".png", picture)
    path = tmp_path / "cut.png"
    path.write_bytes(data.tobytes()[:200])
    with pytest.raises(InvalidInput, match="^not a"):
        probe_video(str(path))


def test_one_frame_video_is_one_frame_but_not_a_still_image(tmp_path, picture):
    from tests.video_fixtures import encode_h264
    path = encode_h264(tmp_path / "one.mp4", [picture])
    info = probe_video(str(path))
    assert info.frame_count == 1 and not info.still_image and info.fps == pytest.approx(30.0)
    assert len(decode_segment(str(path), 0, 128, 640).jpeg) == 1
