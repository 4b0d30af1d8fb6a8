"""Drawing and the rendered pictures: sizes, visible skeletons, the following 3D camera, H.264 with the
input's count and rate, the still-image PNG and the thumbnail."""
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.decoder.probe import probe_video
from services.renderer.draw import BACKGROUND, FILL, Framing, View3D, draw_skeleton_2d, view_rotation
from services.renderer.pose_data import PoseTimeline
from services.renderer.video import (THUMBNAIL_SIDE, output_layout, render_still, render_video, thumbnail_frame,
                                     thumbnail_jpeg)

DATA = Path(__file__).resolve().parent.parent / "data"


def standing(x=0.0, z=-3.0):
    return np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.18, 1.42, 0],
                     [.18, 1.12, 0], [.18, .85, 0], [-.18, 1.42, 0], [-.18, 1.12, 0], [-.18, .85, 0]],
                    np.float32) + np.array([x, 0, z], np.float32)


def walking_timeline(frames: int, first: int = 0, speed=(1.0, 0.0, 0.5)) -> PoseTimeline:
    """One person walking across the floor (world joints move), from frame ``first``."""
    w = np.stack([standing() + np.asarray(speed, np.float32) * (i / 30) for i in range(frames)])
    return PoseTimeline([], common_pb2.Poses3D(tracks=[common_pb2.Track3D(
        track_id=0, first_frame=first, frame_count=frames, world=to_proto(w), grounded=to_proto(w),
        root_relative=to_proto(w - w[:, :1]))]))


def test_output_layout_even_and_capped():
    assert output_layout(1920, 1080) == (1280, 720, 720)
    assert output_layout(640, 360) == (640, 360, 360)
    w, h, p = output_layout(1081, 1921)
    assert h == 720 and w % 2 == 0 and p == 720


def test_2d_skeleton_pixels_where_the_joints_are():
    image = np.zeros((360, 640, 3), np.uint8)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = 400, np.linspace(100, 600, 17), 1.0  # original-frame pixels
    kp[0, 2] = 0.0  # nose not confident: not drawn
    draw_skeleton_2d(image, kp, track_id=0, scale=0.5)
    assert image[150, 200].any() and image[250, 200].any()    # bone between scaled joints
    assert not image[50, 200].any() and not image[200, 400].any()
    assert not image[:40].any()                                # nose (y = 50 after scale) left out


def test_3d_panel_frames_a_person_to_most_of_its_height():
    size = 360
    view = View3D.following(size, [standing().reshape(-1, 3)], fps=30)
    panel = view.render(0, [(0, standing())])
    head, foot = view.project(standing()[[10, 3]], 0)
    assert head[1] < foot[1]                                    # y up: the head above the feet
    height = foot[1] - head[1]
    assert 0.6 * size < height <= FILL * size + 1               # the person fills most of the panel's height
    ys, xs = np.nonzero(np.any(panel != view.render(0, []), axis=2))
    assert ys.min() < head[1] + 5 and ys.max() > foot[1] - 5    # drawn where projected
    assert (panel[5, -5] == BACKGROUND).all()


def test_3d_camera_follows_a_walking_person_smoothly():
    timeline = walking_timeline(90, speed=(2.0, 0.0, 0.0))
    joints = [np.concatenate([p.world for p in timeline.persons(i)]) for i in range(90)]
    view = View3D.following(360, joints, fps=30)
    pelvis = np.array([view.project(timeline.persons(i)[0].world[0], i) for i in range(90)])
    assert np.abs(pelvis[:, 0] - 180).max() < 40                 # stays near the panel's centre while walking 6 m
    steps = np.linalg.norm(np.diff(view.framing.centres, axis=0), axis=1)
    assert steps.max() < 2.0 / 30 * 1.2                          # no jump faster than the person walks


def test_framing_holds_frames_without_people_and_frames_groups():
    rotation = view_rotation(35, 18)
    empty = np.zeros((0, 3))
    far_apart = np.concatenate([standing(-3), standing(3)])
    framing = Framing.follow([empty, standing(), empty, far_apart], fps=30, rotation=rotation, smooth_s=0)
    assert np.allclose(framing.centres[0], framing.centres[1])  # before anyone: the first framed frame
    assert framing.spans[3] > 6 / FILL * 0.8                     # two people 6 m apart both fit
    nobody = Framing.follow([empty, empty], fps=30, rotation=rotation)
    assert np.isfinite(nobody.centres).all() and (nobody.spans > 0).all()


def test_pelvis_trail_and_axes_gizmo_are_drawn():
    timeline = walking_timeline(60)
    joints = [np.concatenate([p.world for p in timeline.persons(i)]) for i in range(60)]
    view = View3D.following(360, joints, fps=30)
    frame = 50
    skeleton = [(0, timeline.persons(frame)[0].world)]
    with_trail = view.render(frame, skeleton, timeline.pelvis_trails(frame, view.trail_frames))
    without = view.render(frame, skeleton)
    changed = np.any(with_trail != without, axis=2)
    start = view.project(timeline.persons(frame - 20)[0].world[0], frame)   # where the pelvis was 20 frames ago
    x, y = int(round(start[0])), int(round(start[1]))
    assert changed[y - 3:y + 4, x - 3:x + 4].any()
    corner = without[int(0.8 * 360):, :int(0.2 * 360)]
    assert (np.abs(corner.astype(int) - BACKGROUND).sum(axis=2) > 100).sum() > 50   # the gizmo's arrows


def test_render_video_is_h264_with_input_count_and_rate_and_a_thumbnail(tmp_path):
    path = str(DATA / "two_people_office_24f.mp4")
    info = probe_video(path).to_proto()
    timeline = walking_timeline(10, first=5)
    out = str(tmp_path / "render.mp4")
    thumbs = []
    progress = list(render_video(path, info, timeline, out, every=10, thumbnail=thumbs))
    assert progress == [10, 20, 24]
    rendered = probe_video(out)
    assert rendered.codec == "h264" and rendered.frame_count == 24
    assert rendered.fps == pytest.approx(30.0) and (rendered.width, rendered.height) == (1000, 360)
    with av.open(out) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        assert c.streams.video[0].format.name == "yuv420p"
    # frames 5..14 carry a 3D skeleton in the panel, frame 0 has only the grid
    assert np.abs(frames[8][:, 640:].astype(int) - frames[0][:, 640:].astype(int)).sum() > 10000
    assert len(thumbs) == 1 and thumbnail_frame(info, timeline) in range(5, 15)
    thumb = cv2.imdecode(np.frombuffer(thumbs[0], np.uint8), cv2.IMREAD_COLOR)
    assert max(thumb.shape[:2]) == THUMBNAIL_SIDE and thumb.shape[1] == 320 and thumb.shape[0] == 115


def test_vfr_render_keeps_frame_times(tmp_path):
    path = str(DATA / "vfr_12f.mp4")
    info = probe_video(path).to_proto()
    out = str(tmp_path / "vfr.mp4")
    list(render_video(path, info, PoseTimeline([], None), out))
    rendered = probe_video(out)
    assert rendered.frame_count == 12
    assert np.allclose(rendered.timestamps_s, info.timestamps_s, atol=0.002)


def test_still_image_renders_a_png_beside_the_3d_view(tmp_path):
    with av.open(str(DATA / "two_people_office_24f.mp4")) as c:
        photo = next(c.decode(video=0)).to_ndarray(format="bgr24")
    image = tmp_path / "photo.jpg"
    cv2.imwrite(str(image), photo)
    info = common_pb2.VideoInfo(width=640, height=360, frame_count=1, still_image=True, timestamps_s=[0.0])
    timeline = walking_timeline(1)
    png, thumb = render_still(str(image), info, timeline)
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and picture.shape == (360, 1000, 3)
    assert np.abs(picture[:, :640].astype(int) - photo.astype(int)).mean() < 3   # the photo on the left
    assert (np.abs(picture[:, 640:].astype(int) - BACKGROUND).sum(axis=2) > 100).sum() > 500  # the 3D view
    assert thumb[:2] == b"\xff\xd8"


def test_thumbnail_longer_side():
    tall = np.zeros((900, 300, 3), np.uint8)
    small = cv2.imdecode(np.frombuffer(thumbnail_jpeg(tall), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape[:2] == (320, 107)
