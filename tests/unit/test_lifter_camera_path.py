"""The camera path from stored camera steps (services/lifter3d/camera_path.py) and world placement under a
camera that turns and zooms (services/lifter3d/world.py). Synthetic: exact homographies of a known camera."""
import numpy as np
import pytest

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.common.rotating_camera import intrinsics, rotation_angle_deg, rotation_from_vector, rotation_homography
from services.lifter3d.camera_path import (HELD, STILL, TRACKED, TRANSLATED, CameraPath, chain_camera_motion,
                                           estimate_focal, translation_warning, video_camera)
from services.lifter3d.world import place_in_world
from tests.unit.test_lifter_world import FPS, camera, film, walker

W, H = 640, 360
FOCAL = 700.0


def turning(frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Rotations (first frame's camera -> frame t's camera) and zoom of a camera panning 12 degrees, tilting,
    rolling and zooming in by 1.25."""
    s = np.linspace(0, 1, frames)
    rotations = [rotation_from_vector(np.radians([-4 * v, 12 * np.sin(np.pi / 2 * v), 2 * v])) for v in s]
    return rotations, 1 + 0.25 * s


def motion_of(rotations, zoom, keyframe_every: int = 10, start: int = 0, stop: int | None = None,
              unreliable: tuple[int, ...] = ()) -> common_pb2.CameraMotion:
    """Exact steps of frames [start, stop), each from the last keyframe (every ``keyframe_every`` frames)."""
    stop = len(zoom) if stop is None else stop
    motion = common_pb2.CameraMotion(start_frame=start, frame_count=stop - start, width=W, height=H)
    for t in range(start, stop):
        ref = (t - 1) // keyframe_every * keyframe_every if t else 0
        h = rotation_homography(rotations[t] @ rotations[ref].T, FOCAL * zoom[ref], FOCAL * zoom[t], W, H)
        motion.steps.append(common_pb2.CameraStep(
            frame_index=t, reference_frame=ref, homography=to_proto(h / h[2, 2]), points=100, inlier_ratio=1.0,
            reliable=t not in unreliable,
            support=common_pb2.BoundingBox(x_min=0, y_min=0, x_max=W, y_max=H)))
    return motion


def test_keyframes_chain_to_the_first_frame_across_segments():
    rotations, zoom = turning(60)
    # two segments, as the decoder stores them; the 2D frame is twice the working size
    motions = [motion_of(rotations, zoom, stop=32), motion_of(rotations, zoom, start=32)]
    path = chain_camera_motion(motions[::-1], 2 * FOCAL, 2 * W, 2 * H, 60)
    assert (path.quality == TRACKED).all() and path.moving
    for t in range(60):
        assert rotation_angle_deg(path.to_first[t] @ rotations[t]) < 1e-3   # to_first undoes the turn
    assert path.zoom == pytest.approx(zoom, rel=1e-5)


def test_frames_without_background_are_flagged_and_filled_in_between_their_neighbours():
    rotations, zoom = turning(30)
    path = chain_camera_motion([motion_of(rotations, zoom, unreliable=(12, 13))], FOCAL, W, H, 30)
    assert list(np.flatnonzero(path.quality == HELD)) == [12, 13]
    assert rotation_angle_deg(path.to_first[14] @ rotations[14]) < 1e-3   # its keyframe (10) was fine
    for t in (12, 13):   # turned evenly from frame 11 to frame 14: close to the smooth turn, unlike holding
        assert rotation_angle_deg(path.to_first[t] @ rotations[t]) < 0.05
        assert rotation_angle_deg(path.to_first[11] @ rotations[t]) > 0.3
        assert path.zoom[t] == pytest.approx(zoom[t], rel=1e-3)


def new_chain_after_a_gap(rotations, zoom, gap: range, restart: int) -> common_pb2.CameraMotion:
    """Exact steps, but frames in ``gap`` unreliable and the frames from ``restart`` on measured from
    ``restart`` (a new chain: the decoder could not relate it to the frames before the gap)."""
    motion = motion_of(rotations, zoom, keyframe_every=1)
    for t in gap:
        motion.steps[t].reliable = False
    for t in range(restart, len(zoom)):
        ref = max(restart, t - 1)
        h = rotation_homography(rotations[t] @ rotations[ref].T, FOCAL * zoom[ref], FOCAL * zoom[t], W, H)
        motion.steps[t].reference_frame = ref
        motion.steps[t].homography.CopyFrom(to_proto(h / h[2, 2]))
    return motion


def test_a_new_chain_after_a_gap_is_turned_on_at_the_cameras_turning_speed():
    rotations, zoom = turning(40)
    path = chain_camera_motion([new_chain_after_a_gap(rotations, zoom, range(15, 20), 20)], FOCAL, W, H, 40)
    assert list(np.flatnonzero(path.quality == HELD)) == list(range(15, 21))
    errors = [rotation_angle_deg(path.to_first[t] @ rotations[t]) for t in range(40)]
    assert max(errors) < 0.1   # the turn missed over the gap (about 2 degrees) is carried, not lost
    assert path.zoom == pytest.approx(zoom, rel=2e-3)
    # holding the orientation across the gap would leave the rest of the video off by the turn it missed
    assert rotation_angle_deg(path.to_first[14] @ rotations[20]) > 1.5


def test_no_motion_is_a_still_camera_and_frames_past_the_motion_hold():
    assert not CameraPath.still(5).moving and (CameraPath.still(5).quality == STILL).all()
    path, focal, warnings = video_camera([], 0.0, W, H, 5)
    assert path is None and focal == 0.0 and warnings == []
    rotations, zoom = turning(10)
    path = chain_camera_motion([motion_of(rotations, zoom)], FOCAL, W, H, 14)
    assert (path.quality[10:] == HELD).all()


def slide_from(motion: common_pb2.CameraMotion, rotations: list[np.ndarray], start: int) -> common_pb2.CameraMotion:
    """``motion`` with the camera also sliding sideways from frame ``start`` on, 3 cm a frame in front of a wall
    2 m away (a plane's homography H = K (R + t n^T / d) K^-1, which no turn and zoom explains; no zoom)."""
    k = intrinsics(FOCAL, W, H)
    for t in range(start, len(motion.steps)):
        slide = np.outer([0.03 * (t - start + 1), 0.0, 0.0], [0.0, 0.0, 1.0]) / 2.0
        h = k @ (rotations[t] @ rotations[0].T + slide) @ np.linalg.inv(k)
        step = motion.steps[t]
        step.reference_frame = 0
        step.homography.CopyFrom(to_proto(h / h[2, 2]))
    return motion


def test_a_camera_that_moves_is_flagged_and_warned():
    rotations, zoom = turning(20)
    motion = slide_from(motion_of(rotations, zoom), rotations, 10)   # frames 10..19: 0.3 m sideways
    path = chain_camera_motion([motion], FOCAL, W, H, 20)
    assert (path.quality[:10] == TRACKED).all() and (path.quality[12:] == TRANSLATED).all()
    assert "camera itself probably moved" in translation_warning(path)
    assert translation_warning(chain_camera_motion([motion_of(rotations, zoom)], FOCAL, W, H, 20)) is None


def test_focal_length_is_found_when_the_camera_turns_and_not_guessed_when_it_does_not():
    rotations, zoom = turning(40)
    prior = 500.0
    found = estimate_focal([motion_of(rotations, zoom)], prior, W, H)
    assert found == pytest.approx(FOCAL, rel=0.05)
    still = [np.eye(3)] * 40
    assert estimate_focal([motion_of(still, np.ones(40))], prior, W, H) is None
    path, focal, _ = video_camera([motion_of(rotations, zoom)], 0.0, W, H, 40)
    assert focal == pytest.approx(FOCAL, rel=0.05) and path.moving


def test_identity_path_gives_exactly_the_still_camera_result():
    world, _ = walker(90, start=(-1.0, -6.0))
    rot, centre = camera(10.0, 1.5)
    track = film(world, rot, centre, FOCAL, W, H)
    still_cam, (still,) = place_in_world([track], W, H, FOCAL, FPS)
    path = CameraPath.still(90)
    path.quality[:] = TRACKED
    moving_cam, (moving,) = place_in_world([track], W, H, FOCAL, FPS, camera_path=path)
    assert np.allclose(moving.world, still.world, atol=1e-5) and (moving.contacts == still.contacts).all()
    assert np.allclose(moving_cam.rotation, still_cam.rotation)


def test_a_walker_filmed_by_a_panning_zooming_camera_lands_where_a_still_camera_puts_them():
    frames = 120
    world, planted = walker(frames, start=(-2.0, -6.0))
    rot0, centre = camera(10.0, 1.5)
    rotations, zoom = turning(frames)
    # the turning camera: frame t's world -> camera rotation is rotations[t] @ rot0
    cam = np.stack([(world[t] - centre) @ (rotations[t] @ rot0).T for t in range(frames)])
    pix = np.stack([np.stack([FOCAL * zoom[t] * cam[t, :, 0] / cam[t, :, 2] + W / 2,
                              FOCAL * zoom[t] * cam[t, :, 1] / cam[t, :, 2] + H / 2], -1) for t in range(frames)])
    from services.lifter3d.world import TrackInput
    track = TrackInput(cam - cam[:, :1], np.concatenate([pix, np.ones((frames, 17, 1))], -1))
    path = chain_camera_motion([motion_of(rotations, zoom)], FOCAL, W, H, frames)
    placed_cam, (placed,) = place_in_world([track], W, H, FOCAL, FPS, camera_path=path)
    _, (still,) = place_in_world([film(world, rot0, centre, FOCAL, W, H)], W, H, FOCAL, FPS)
    assert np.abs(placed.world[:, 0] - still.world[:, 0]).max() < 0.02       # the pelvis path, metres
    assert np.abs(placed.world[:, 0] - world[:, 0]).max() < 0.1              # and the true one
    assert placed_cam.pitch_deg == pytest.approx(10.0, abs=1.0)
    # ignoring the turn would drag the walker round with the camera
    _, (naive,) = place_in_world([track], W, H, FOCAL, FPS)
    assert np.abs(naive.world[:, 0] - world[:, 0]).max() > 0.5
    # per-frame rotations and focal lengths are those of the camera
    frame_rotations = placed_cam.frame_rotations(frames)
    for t in (0, 60, 119):
        assert rotation_angle_deg(frame_rotations[t] @ rotations[t] @ placed_cam.rotation.T) < 1e-3
    assert placed_cam.frame_focals(frames) == pytest.approx(FOCAL * zoom / zoom[0])
    got = placed.contacts
    assert (got & planted).sum() / planted.sum() > 0.8
