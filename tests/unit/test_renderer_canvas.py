"""The cheap render path keeps the render's look: the grid drawn in one call gives the same pixels as one line
per grid line, the panel drawn into the canvas equals a fresh panel, and the encoded video (YUV converted by
OpenCV) stays within a stated tolerance of the pictures composed one by one."""
from pathlib import Path

import av
import cv2
import numpy as np

from services.decoder.probe import probe_video
from services.renderer.draw import GRID, View3D, _pt
from services.renderer.video import _upright_frames, build_view, compose_frame, output_layout, render_video, yuv420

from .test_renderer_video import standing, walking_timeline

DATA = Path(__file__).resolve().parent.parent / "data"
#: Tolerance of the rendered video against the composed pictures (H.264 at crf 23 and 4:2:0 chroma included):
#: mean absolute difference per BGR channel value, and luma PSNR.
MAX_MEAN_ABS_DIFF = 3.0
MIN_LUMA_PSNR_DB = 36.0


def _grid_line_by_line(view: View3D, panel: np.ndarray, frame: int) -> None:
    """The floor grid as ``View3D`` drew it before: one projection and one ``cv2.line`` per grid line."""
    g = view.grid_m
    lo_x, hi_x, lo_z, hi_z = view.floor_bounds(frame)
    x0, x1 = np.floor(lo_x / g) * g, np.ceil(hi_x / g) * g
    z0, z1 = np.floor(lo_z / g) * g, np.ceil(hi_z / g) * g
    for x in np.arange(x0, x1 + g / 2, g):
        a, b = view.project(np.array([[x, 0, z0], [x, 0, z1]]), frame)
        cv2.line(panel, _pt(a), _pt(b), GRID, 1, cv2.LINE_AA, shift=4)
    for z in np.arange(z0, z1 + g / 2, g):
        a, b = view.project(np.array([[x0, 0, z], [x1, 0, z]]), frame)
        cv2.line(panel, _pt(a), _pt(b), GRID, 1, cv2.LINE_AA, shift=4)


def test_grid_in_one_call_matches_line_by_line():
    timeline = walking_timeline(60, speed=(1.5, 0.0, 0.8))
    joints = [np.concatenate([p.world for p in timeline.persons(i)]) for i in range(60)]
    view = View3D.following(360, joints, fps=30)
    for frame in (0, 30, 59):
        ours, reference = np.zeros((360, 360, 3), np.uint8), np.zeros((360, 360, 3), np.uint8)
        view._draw_grid(ours, frame)
        _grid_line_by_line(view, reference, frame)
        assert ours.any() and np.array_equal(ours, reference)


def test_panel_drawn_into_a_canvas_equals_a_fresh_panel():
    view = View3D.following(360, [standing().reshape(-1, 3)], fps=30)
    canvas = np.full((360, 1000, 3), 7, np.uint8)
    view.render(0, [(0, standing())], out=canvas[:, 640:])
    assert np.array_equal(canvas[:, 640:], view.render(0, [(0, standing())]))
    assert (canvas[:, :640] == 7).all()     # the frame's columns untouched


def test_rendered_video_within_tolerance_of_pictures_composed_one_by_one(tmp_path):
    path = str(DATA / "two_people_office_24f.mp4")
    info = probe_video(path).to_proto()
    timeline = walking_timeline(20, first=2)
    out = str(tmp_path / "render.mp4")
    list(render_video(path, info, timeline, out))
    width, height, panel = output_layout(info.width, info.height)
    view = build_view(info, timeline, panel)
    composed = [compose_frame(frame, i, timeline, view, height / info.height)
                for i, frame in enumerate(_upright_frames(path, width, height))]
    with av.open(out) as c:
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(decoded) == len(composed) == info.frame_count
    for picture, reference in zip(decoded, composed):
        assert np.abs(picture.astype(int) - reference.astype(int)).mean() < MAX_MEAN_ABS_DIFF
        luma, luma_ref = yuv420(picture)[:height].astype(float), yuv420(reference)[:height].astype(float)
        assert 10 * np.log10(255 ** 2 / np.mean((luma - luma_ref) ** 2)) > MIN_LUMA_PSNR_DB
