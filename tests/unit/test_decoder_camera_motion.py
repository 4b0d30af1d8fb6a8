"""Camera motion from the background (services/decoder/camera_motion.py) on frames with a known camera.

The frames are those of the test clip (a static camera), seen through a virtual camera that turns and zooms by
a known amount: each frame is warped by ``K_out R(t) K_src^-1`` into a narrower view, so no border shows.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.common.rotating_camera import (apply_homography, intrinsics, rotation_angle_deg, rotation_from_vector,
                                             rotation_zoom_from_homography)
from services.common.video_reader import decoded_frames, open_video
from services.decoder import camera_motion as camera_motion_module
from services.decoder.camera_motion import MIN_INLIERS, BackgroundTracker, camera_motion

CLIP = Path(__file__).resolve().parent.parent / "data" / "two_people_office_24f.mp4"
SRC_W, SRC_H = 640, 360
OUT_W, OUT_H = 480, 270
F_SRC = SRC_W / 2 / np.tan(np.radians(57.5) / 2)
F_OUT = F_SRC * 1.1  # the narrower view: 480 px wide at 1.1 x the source's focal length


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    container, stream = open_video(str(CLIP))
    with container:
        return [f.to_ndarray(format="bgr24") for f in decoded_frames(container, stream)]


def virtual_camera(frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Rotations (source camera -> virtual camera) and zoom of a pan, tilt and roll with a zoom-in."""
    t = np.linspace(0.0, 1.0, frames)
    rotations = [rotation_from_vector([0, 0, np.radians(2 * s)]) @ rotation_from_vector([np.radians(-3 * s), 0, 0])
                 @ rotation_from_vector([0, np.radians(6 * np.sin(np.pi * s)), 0]) for s in t]
    return rotations, 1.0 + 0.2 * t


def warp(frames: list[np.ndarray], rotations, zoom) -> list[np.ndarray]:
    k_src = intrinsics(F_SRC, SRC_W, SRC_H)
    return [cv2.warpPerspective(f, intrinsics(F_OUT * z, OUT_W, OUT_H) @ r @ np.linalg.inv(k_src), (OUT_W, OUT_H),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for f, r, z in zip(frames, rotations, zoom)]


def support_grid(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.stack(np.meshgrid(np.linspace(x0, x1, 5), np.linspace(y0, y1, 5)), -1).reshape(-1, 2)


def follow(frames: list[np.ndarray], exclude=None) -> list:
    tracker = BackgroundTracker(frames[0].shape[1], frames[0].shape[0])
    return [tracker.add(i, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), None if exclude is None else exclude[i])
            for i, f in enumerate(frames)]


def chained(steps, focal: float, width: int, height: int) -> tuple[list[np.ndarray], list[float]]:
    """Rotation (first frame's camera -> each frame's) and zoom, keyframes chained, with the true focal length."""
    rotations, zooms = [], []
    for s in steps:
        if s.reference_frame == s.frame_index:
            rotations.append(np.eye(3) if not rotations else rotations[-1])
            zooms.append(1.0 if not zooms else zooms[-1])
            continue
        turn = rotation_zoom_from_homography(s.homography, focal * zooms[s.reference_frame], width, height, s.support)
        rotations.append(turn.rotation @ rotations[s.reference_frame])
        zooms.append(turn.zoom * zooms[s.reference_frame])
    return rotations, zooms


def test_a_turning_zooming_camera_is_recovered_within_half_a_degree(clip):
    rotations, zoom = virtual_camera(len(clip))
    steps = follow(warp(clip, rotations, zoom))
    assert all(s.reliable for s in steps)
    assert steps[0].reference_frame == 0 and np.allclose(steps[0].homography, np.eye(3))
    got, zooms = chained(steps, F_OUT, OUT_W, OUT_H)
    for t, (r, z) in enumerate(zip(got, zooms)):
        truth = rotations[t] @ rotations[0].T
        assert rotation_angle_deg(r.T @ truth) < 0.5, t
        assert z == pytest.approx(zoom[t] / zoom[0], rel=0.01)
    assert rotation_angle_deg(rotations[-1] @ rotations[0].T) > 3.0   # the camera did turn


def test_a_still_camera_gives_identity(clip):
    steps = follow(clip)
    assert all(s.reliable and s.reference_frame == 0 for s in steps)
    for s in steps:   # where the points are (beyond them the homography is extrapolated)
        grid = support_grid(s.support)
        assert np.median(np.linalg.norm(apply_homography(s.homography, grid) - grid, axis=1)) < 0.2
        turn = rotation_zoom_from_homography(s.homography, F_SRC, SRC_W, SRC_H, s.support)
        assert rotation_angle_deg(turn.rotation) < 0.05 and turn.zoom == pytest.approx(1.0, abs=1e-3)


def test_too_little_background_is_flagged_not_guessed(clip):
    blank = [np.full((SRC_H, SRC_W, 3), 128, np.uint8) for _ in range(5)]
    steps = follow(blank)
    assert not any(s.reliable for s in steps)
    # a picture that goes blank mid-clip: the blank frames are flagged; the first frame after them is matched
    # straight to the last one before them, so the chain goes on across the gap
    mixed = clip[:6] + blank[:3] + clip[9:14]
    steps = follow(mixed)
    assert all(s.reliable for s in steps[:6]) and not any(s.reliable for s in steps[6:9])
    assert steps[9].reference_frame == 5 and steps[9].reliable and steps[10].reference_frame == 9
    assert all(s.reliable for s in steps[9:])
    for s in steps[9:]:   # a still camera: where the points are, pixels stay put
        grid = support_grid(s.support)
        assert np.median(np.linalg.norm(apply_homography(s.homography, grid) - grid, axis=1)) < 0.2


def test_after_a_gap_longer_than_the_bridge_a_new_chain_starts(clip, monkeypatch):
    monkeypatch.setattr(camera_motion_module, "BRIDGE_FRAMES", 2)
    blank = [np.full((SRC_H, SRC_W, 3), 128, np.uint8) for _ in range(3)]
    steps = follow(clip[:6] + blank + clip[9:14])
    assert all(s.reliable for s in steps[:6]) and not any(s.reliable for s in steps[6:9])
    assert steps[9].reference_frame == 9 and steps[10].reference_frame == 9 and steps[10].reliable


def test_excluded_pixels_are_never_used(clip):
    # a textured patch pasted on every frame at a place that moves: RANSAC would leave it out anyway, but with
    # the mask it never enters (the steps use only points outside it)
    frames, masks = [], []
    patch = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)
    for i, f in enumerate(clip[:10]):
        f = f.copy()
        x = 40 + 12 * i
        f[100:220, x:x + 120] = patch
        mask = np.zeros((SRC_H, SRC_W), bool)
        mask[90:230, x - 10:x + 130] = True
        frames.append(f)
        masks.append(mask)
    steps = follow(frames, masks)
    assert all(s.reliable for s in steps)
    for s in steps:
        turn = rotation_zoom_from_homography(s.homography, F_SRC, SRC_W, SRC_H, s.support)
        assert rotation_angle_deg(turn.rotation) < 0.05 and turn.zoom == pytest.approx(1.0, abs=2e-3)
    tracker = BackgroundTracker(SRC_W, SRC_H)
    for i, (f, m) in enumerate(zip(frames, masks)):
        tracker.add(i, cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), m)
        inside = (tracker._points / tracker.scale).astype(int)   # the points it follows, in frame pixels
        assert not m[inside[:, 1], inside[:, 0]].any()


def test_stored_form_keeps_the_segments_frames_only(clip):
    steps = follow(clip[:8])
    motion = camera_motion(steps, 1, 7, SRC_W, SRC_H)
    assert [s.frame_index for s in motion.steps] == list(range(1, 8))
    assert (motion.width, motion.height, motion.start_frame, motion.frame_count) == (SRC_W, SRC_H, 1, 7)
    assert motion.steps[0].reference_frame == 0 and motion.steps[0].points >= MIN_INLIERS
    assert list(motion.steps[0].homography.shape) == [3, 3]


def test_wrong_frame_size_is_refused():
    tracker = BackgroundTracker(320, 180)
    with pytest.raises(ValueError, match="320x180"):
        tracker.add(0, np.zeros((100, 100), np.uint8))
