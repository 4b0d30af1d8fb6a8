"""The moving-camera evaluation's comparison of the two runs (training/evaluate_camera.py): the same person is
found frame by frame through the known virtual camera, whatever the tracks' numbers."""
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.common.rotating_camera import apply_homography, quaternion_from_rotation
from training.evaluate_camera import VirtualCamera, depth_and_lateral_cm, moving_to_still, path_distances_cm

FRAMES, SIZE, FOCAL = 12, (1280, 720), 1000.0


def _person(x: float) -> np.ndarray:
    """COCO-17 2D of a standing person centred at ``x`` pixels: ``[17, 3]``."""
    return np.stack([np.full(17, x) + np.linspace(-40, 40, 17), np.linspace(150, 600, 17), np.ones(17)], axis=1)


def _poses(tracks: dict[int, tuple[np.ndarray, np.ndarray]], height_m: float = 1.5) -> common_pb2.Poses3D:
    """Poses3D with ``track_id -> (2D [F, 17, 3], world pelvis [F, 3])``; every joint at the pelvis."""
    poses = common_pb2.Poses3D()
    poses.camera.height_m = height_m
    poses.camera.rotations.CopyFrom(to_proto(quaternion_from_rotation(np.tile(np.eye(3), (FRAMES, 1, 1)))))
    for track_id, (keypoints, pelvis) in tracks.items():
        poses.tracks.add(track_id=track_id, first_frame=0, keypoints2d=to_proto(keypoints.astype(np.float32)),
                         world=to_proto(np.repeat(pelvis[:, None], 17, axis=1).astype(np.float32)))
    return poses


def test_people_are_matched_through_the_virtual_camera_not_by_track_number():
    camera = VirtualCamera.sequence(FRAMES, 30.0, pan=8.0, tilt=3.0, roll=2.0, zoom=1.3)
    left, right = np.stack([_person(400)] * FRAMES), np.stack([_person(900)] * FRAMES)
    pelvis_left = np.tile([-1.0, 0.9, -4.0], (FRAMES, 1))
    pelvis_right = np.tile([1.0, 0.9, -5.0], (FRAMES, 1))
    still = _poses({0: (left, pelvis_left), 1: (right, pelvis_right)})

    def seen_moving(keypoints):   # the still view's 2D as the moving view shows it
        out = keypoints.copy()
        for t in range(FRAMES):
            to_moving = np.linalg.inv(moving_to_still(camera, t, FOCAL, *SIZE))
            out[t, :, :2] = apply_homography(to_moving, keypoints[t, :, :2])
        return out

    # the moving run numbers them the other way round, puts the left one 10 cm off, and sees a third person
    moving = _poses({7: (seen_moving(right), pelvis_right), 3: (seen_moving(left), pelvis_left + [0.1, 0.0, 0.0]),
                     9: (np.stack([_person(100)] * FRAMES), pelvis_left)})
    distances, lifted = path_distances_cm(moving, still, camera, FOCAL, SIZE)
    assert lifted == 3 * FRAMES and len(distances) == 2 * FRAMES
    assert np.allclose(np.sort(distances), [0.0] * FRAMES + [10.0] * FRAMES, atol=1e-3)
    axes, _ = path_distances_cm(moving, still, camera, FOCAL, SIZE, camera_axes=True)
    assert np.allclose(np.sort(axes), np.sort(distances), atol=1e-3)


def test_drawn_sequences_stay_within_the_limits_start_still_and_differ_by_seed():
    limits = dict(pan=10.0, tilt=5.0, roll=3.0, zoom=1.3)
    drawn = [VirtualCamera.drawn(87, seed, **limits) for seed in (1, 2, 3)]
    for camera in drawn:
        assert np.abs(camera.pan).max() <= 10.0 and np.abs(camera.tilt).max() <= 5.0
        assert np.abs(camera.roll).max() <= 3.0 and 1.0 <= camera.zoom.min() and camera.zoom.max() <= 1.3
        assert camera.pan[0] == camera.tilt[0] == camera.roll[0] == 0.0 and camera.zoom[0] == 1.0
        assert np.abs(camera.pan).max() >= 5.0    # at least half the pan limit
    assert not np.allclose(drawn[0].pan, drawn[1].pan)
    assert np.array_equal(VirtualCamera.drawn(87, 1, **limits).pan, drawn[0].pan)


def test_depth_and_lateral_split_the_difference_along_and_across_the_line_of_sight():
    camera = VirtualCamera.still(FRAMES)
    keypoints = np.stack([_person(640)] * FRAMES)
    still = _poses({0: (keypoints, np.tile([0.0, 1.5, -4.0], (FRAMES, 1)))})
    # the moving run's person 0.3 m further along the line of sight (world -z here) and 0.1 m to the right
    moving = _poses({5: (keypoints, np.tile([0.1, 1.5, -4.3], (FRAMES, 1)))})
    split = depth_and_lateral_cm(moving, still, camera, FOCAL, SIZE)
    assert list(split) == [0]
    assert split[0]["frames"] == FRAMES
    assert abs(split[0]["depth_cm"] - 30.0) < 0.5 and abs(split[0]["lateral_cm"] - 10.0) < 0.5
    assert abs(split[0]["distance_m"] - 4.0) < 1e-3
