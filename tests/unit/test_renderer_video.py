"""Drawing and the rendered MP4: sizes, visible skeletons, H.264 with the input's count and rate."""
from pathlib import Path

import av
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.decoder.probe import probe_video
from services.renderer.draw import BACKGROUND, View3D, draw_skeleton_2d
from services.renderer.pose_data import PoseTimeline
from services.renderer.video import output_layout, render_video

DATA = Path(__file__).resolve().parent.parent / "data"


def standing(x=0.0, z=3.0):
    return np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.18, 1.42, 0],
                     [.18, 1.12, 0], [.18, .85, 0], [-.18, 1.42, 0], [-.18, 1.12, 0], [-.18, .85, 0]],
                    np.float32) + np.array([x, 0, z], np.float32)


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


def test_3d_panel_draws_upright_skeleton_above_the_ground():
    view = View3D.fitted(360, standing().reshape(-1, 3))
    empty = view.render([])
    assert empty.shape == (360, 360, 3)
    panel = view.render([(0, standing())])
    changed = np.any(panel != empty, axis=2)
    assert changed.sum() > 300
    head, foot = view.project(standing()[[10, 3]])
    assert head[1] < foot[1] - 100            # y up: the head is drawn well above the feet
    assert changed[int(head[1]), int(head[0])]
    assert (panel[5, -5] == BACKGROUND).all()


def test_render_video_is_h264_with_input_count_and_rate(tmp_path):
    path = str(DATA / "two_people_office_24f.mp4")
    info = probe_video(path).to_proto()
    g = np.repeat(standing()[None], 10, axis=0)
    timeline = PoseTimeline([], common_pb2.Poses3D(tracks=[common_pb2.Track3D(
        track_id=0, first_frame=5, frame_count=10, grounded=to_proto(g), root_relative=to_proto(g - g[:, :1]))]))
    out = str(tmp_path / "render.mp4")
    progress = list(render_video(path, info, timeline, out, every=10))
    assert progress == [10, 20, 24]
    rendered = probe_video(out)
    assert rendered.codec == "h264" and rendered.frame_count == 24
    assert rendered.fps == pytest.approx(30.0) and (rendered.width, rendered.height) == (1000, 360)
    with av.open(out) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        assert c.streams.video[0].format.name == "yuv420p"
    # frames 5..14 carry a 3D skeleton in the panel, frame 0 has only the grid
    assert np.abs(frames[8][:, 640:].astype(int) - frames[0][:, 640:].astype(int)).sum() > 10000


def test_vfr_render_keeps_frame_times(tmp_path):
    path = str(DATA / "vfr_12f.mp4")
    info = probe_video(path).to_proto()
    out = str(tmp_path / "vfr.mp4")
    list(render_video(path, info, PoseTimeline([], None), out))
    rendered = probe_video(out)
    assert rendered.frame_count == 12
    assert np.allclose(rendered.timestamps_s, info.timestamps_s, atol=0.002)
