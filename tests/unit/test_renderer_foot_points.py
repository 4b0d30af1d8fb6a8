"""Heel and toe from BlazePose's 2D foot landmarks (foot_points.py) and the ankle angle built on them: a
known 3D foot seen by a synthetic camera, projected, then recovered."""
import math

import numpy as np
import pytest

from services.lifter3d.world import CameraPose
from services.common.joint_angles import ankle_dorsiflexion
from services.renderer.foot_points import (FOOT_LANDMARKS, camera_rotation, feet_in_world, foot_length,
                                           rotation_from_tracks)

FOCAL, WIDTH, HEIGHT, PITCH, CAMERA_HEIGHT = 900.0, 1280, 720, 12.0, 1.6
ACROSS = np.array([[0.0, 0.0, 1.0]])   # a person facing +x (walking across the view) has their right at +z
LENGTH = 0.22                          # heel -> toe of foot() below, metres


def rolled(rotation, roll_deg):
    """``rotation`` (camera -> world) with the camera turned ``roll_deg`` about its optical axis."""
    r = np.radians(roll_deg)
    return rotation @ np.array([[np.cos(r), -np.sin(r), 0.0], [np.sin(r), np.cos(r), 0.0], [0.0, 0.0, 1.0]])


#: the synthetic camera: looking 12 deg down, rolled 5 deg (the lifter's world frame can keep a roll)
ROTATION = rolled(camera_rotation(PITCH), 5.0)


def project(world, rotation=ROTATION, height_m=CAMERA_HEIGHT):
    """World points [..., 3] -> pixels [..., 2] of the synthetic camera (inverse of CameraPose.to_world)."""
    cam = (np.asarray(world, float) - [0.0, height_m, 0.0]) @ rotation
    return np.stack([FOCAL * cam[..., 0] / cam[..., 2] + WIDTH / 2, FOCAL * cam[..., 1] / cam[..., 2] + HEIGHT / 2],
                    axis=-1)


def foot(ankle, dorsiflexion_deg, forwards=(1.0, 0.0, 0.0)):
    """Heel and toe of a foot at ``ankle`` pointing ``forwards`` (horizontal), tipped up by the angle."""
    f = np.asarray(forwards, float) / np.linalg.norm(forwards)
    a = np.radians(dorsiflexion_deg)
    heel = np.asarray(ankle, float) + [0.0, -0.06, 0.0] - 0.05 * f
    toe = heel + LENGTH * (np.cos(a) * f + np.sin(a) * np.array([0.0, 1.0, 0.0]))
    return heel, toe


def landmarks_for(ankle, heel, toe, side="left", visibility=(0.9, 0.8, 0.7)):
    lm = np.zeros((33, 3))
    for k, point, vis in zip(FOOT_LANDMARKS[side], (ankle, heel, toe), visibility):
        lm[k, :2], lm[k, 2] = project(point), vis
    return lm


def test_rotation_matches_the_lifters_camera_pose():
    rotation = camera_rotation(PITCH)
    assert CameraPose(FOCAL, True, rotation, CAMERA_HEIGHT).pitch_deg == pytest.approx(PITCH)
    assert rotation @ rotation.T == pytest.approx(np.eye(3))
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    # the optical axis looks towards -z (z points towards the camera) and down
    axis = rotation @ [0, 0, 1]
    assert axis[2] < 0 and axis[1] < 0


@pytest.mark.parametrize("dorsiflexion", [-30.0, -10.0, 0.0, 15.0, 25.0])
@pytest.mark.parametrize("place", [(0.0, 0.08, -4.0), (-1.5, 0.08, -3.0), (1.2, 0.08, -6.0)])
def test_a_projected_foot_seen_from_the_side_is_recovered(dorsiflexion, place):
    ankle = np.array(place)
    knee = ankle + [0.0, 0.45, 0.0]
    heel, toe = foot(ankle, dorsiflexion)
    lm = np.full((1, 33, 3), np.nan)
    lm[0] = landmarks_for(ankle, heel, toe)
    ankles = np.stack([ankle, ankle + [0.0, 0.0, -0.2]])[None]     # the right foot has no landmarks
    feet, scores = feet_in_world(ankles, ACROSS, LENGTH, lm, FOCAL, ROTATION, CAMERA_HEIGHT, WIDTH, HEIGHT)
    assert scores[0].tolist() == pytest.approx([0.7, 0.0])
    assert np.isnan(feet[0, 1]).all()
    # the foot lies in the sagittal plane: its points land on the truth
    assert np.linalg.norm(feet[0, 0, 0] - heel) < 1e-6 and np.linalg.norm(feet[0, 0, 1] - toe) < 1e-6
    angle = ankle_dorsiflexion(knee[None], ankle[None], feet[:, 0, 0], feet[:, 0, 1], ACROSS)[0]
    assert angle == pytest.approx(dorsiflexion, abs=1e-6)


def turned_foot(turn, dorsiflexion, rng=None, noise_px=0.0):
    """A left foot at 4 m whose sagittal plane is turned ``turn`` degrees away from facing the camera, seen
    with gaussian 2D noise of ``noise_px`` on its landmarks; returns the recovered dorsiflexion."""
    forwards = np.array([np.cos(np.radians(turn)), 0.0, -np.sin(np.radians(turn))])
    right = np.cross(forwards, [0.0, 1.0, 0.0])
    ankle = np.array([0.4, 0.08, -4.0])
    heel, toe = foot(ankle, dorsiflexion, forwards)
    lm = landmarks_for(ankle, heel, toe)
    if noise_px:
        lm[list(FOOT_LANDMARKS["left"]), :2] += rng.normal(0.0, noise_px, (3, 2))
    feet, _ = feet_in_world(np.stack([ankle, ankle])[None], right[None], LENGTH, lm[None], FOCAL, ROTATION,
                            CAMERA_HEIGHT, WIDTH, HEIGHT)
    knee = ankle + [0.0, 0.45, 0.0]
    return ankle_dorsiflexion(knee[None], ankle[None], feet[:, 0, 0], feet[:, 0, 1], right[None])[0]


@pytest.mark.parametrize("turn", [0.0, 30.0, 50.0])
def test_a_foot_in_a_turned_sagittal_plane_is_recovered(turn):
    for dorsiflexion in (-25.0, 0.0, 20.0):
        assert turned_foot(turn, dorsiflexion) == pytest.approx(dorsiflexion, abs=1e-6)


@pytest.mark.parametrize("turn", [0.0, 50.0])
def test_half_a_pixel_of_2d_noise_moves_the_angle_about_a_degree(turn):
    rng = np.random.default_rng(7)
    errors = np.abs([turned_foot(turn, d, rng, 0.5) - d for d in (-25.0, 0.0, 20.0) for _ in range(100)])
    # measured with this seed: mean 0.73 / 0.84 deg, 95th percentile 1.8 / 2.0 deg (turn 0 / 50)
    assert errors.mean() < 1.2 and np.percentile(errors, 95) < 3.0


def front_view_error(dorsiflexion, length_factor, forwards=(0.0, 0.0, 1.0)):
    """Recovered minus true dorsiflexion of a left foot of a person facing ``forwards`` (default: the
    camera), with the foot's length given ``length_factor`` times its true length."""
    f = np.asarray(forwards, float)
    right = np.cross(f, [0.0, 1.0, 0.0])
    ankle = np.array([0.3, 0.08, -4.0])
    heel, toe = foot(ankle, dorsiflexion, f)
    lm = landmarks_for(ankle, heel, toe)[None]
    feet, scores = feet_in_world(np.stack([ankle, ankle])[None], right[None], LENGTH * length_factor, lm, FOCAL,
                                 ROTATION, CAMERA_HEIGHT, WIDTH, HEIGHT)
    assert scores[0, 0] == pytest.approx(0.7)
    knee = ankle + [0.0, 0.45, 0.0]
    return ankle_dorsiflexion(knee[None], ankle[None], feet[:, 0, 0], feet[:, 0, 1], right[None])[0] - dorsiflexion


@pytest.mark.parametrize("dorsiflexion", [-25.0, -10.0, 0.0, 10.0, 25.0])
def test_a_foot_pointing_at_the_camera_is_placed_by_its_length(dorsiflexion):
    # the heel is put at the ankle's depth (it lies 5 cm behind): about a degree off with the true length
    assert front_view_error(dorsiflexion, 1.0) == pytest.approx(0.0, abs=1.0)
    # a foot length 10 % off: measured 0.4..6.5 deg (larger for a pointed foot)
    assert abs(front_view_error(dorsiflexion, 0.9)) < 8.0 and abs(front_view_error(dorsiflexion, 1.1)) < 8.0
    # walking away from the camera: the toe is taken on the far side of the heel
    away = front_view_error(dorsiflexion, 1.0, forwards=(0.0, 0.0, -1.0))
    assert away == pytest.approx(0.0, abs=2.0)


def test_foot_length_follows_the_shanks():
    knees = np.array([[[0.1, 0.5, 0.0], [-0.1, 0.52, 0.0]]])
    ankles = np.array([[[0.1, 0.08, 0.0], [-0.1, 0.08, 0.0]]])
    assert foot_length(knees, ankles)[0] == pytest.approx(0.43 * 0.152 / 0.246)


def test_a_misplaced_ankle_keeps_the_foots_direction():
    ankle = np.array([0.3, 0.08, -4.0])
    heel, toe = foot(ankle, 20.0)
    lm = landmarks_for(ankle, heel, toe, side="right")[None]
    shifted = ankle + [0.05, 0.02, -0.1]                          # the lifter put the ankle a little off
    feet, _ = feet_in_world(np.stack([shifted, shifted])[None], ACROSS, LENGTH, lm, FOCAL, ROTATION, CAMERA_HEIGHT,
                            WIDTH, HEIGHT)
    got = feet[0, 1, 1] - feet[0, 1, 0]
    want = toe - heel
    assert np.degrees(np.arccos(got @ want / np.linalg.norm(got) / np.linalg.norm(want))) < 2.0
    assert np.linalg.norm(feet[0, 1, 0] - (heel + shifted - ankle)) < 0.02


def test_an_unseen_foot_point_leaves_the_foot_unknown():
    ankle = np.array([0.0, 0.08, -4.0])
    heel, toe = foot(ankle, 0.0)
    lm = landmarks_for(ankle, heel, toe, visibility=(0.9, 0.9, 0.1))[None]   # toe hidden
    feet, scores = feet_in_world(np.stack([ankle, ankle])[None], ACROSS, LENGTH, lm, FOCAL, ROTATION, CAMERA_HEIGHT,
                                 WIDTH, HEIGHT)
    assert np.isnan(feet).all() and (scores == 0).all()


def test_a_foot_point_outside_the_frame_leaves_the_foot_unknown():
    ankle = np.array([0.0, 0.08, -4.0])
    heel, toe = foot(ankle, 0.0)
    lm = landmarks_for(ankle, heel, toe)
    lm[FOOT_LANDMARKS["left"][2], 1] = HEIGHT + 5.0        # the toe guessed below the picture, still "visible"
    feet, scores = feet_in_world(np.stack([ankle, ankle])[None], ACROSS, LENGTH, lm[None], FOCAL, ROTATION,
                                 CAMERA_HEIGHT, WIDTH, HEIGHT)
    assert np.isnan(feet).all() and (scores == 0).all()


def test_the_rotation_with_its_roll_is_recovered_from_lifted_joints_and_their_2d():
    rng = np.random.default_rng(3)
    world = rng.uniform([-2.0, 0.0, -7.0], [2.0, 1.8, -2.5], (60, 3))
    pixels = project(world) + rng.normal(0.0, 1.0, (60, 2))          # one pixel of 2D noise
    pixels[5] = np.nan                                                # a joint not seen is ignored
    got = rotation_from_tracks(world, pixels, FOCAL, CAMERA_HEIGHT, WIDTH, HEIGHT)
    turn = np.degrees(np.arccos(np.clip((np.trace(got.T @ ROTATION) - 1) / 2, -1, 1)))
    assert turn < 0.2 and np.linalg.det(got) == pytest.approx(1.0)
    exact = rotation_from_tracks(world[:3], project(world[:3]), FOCAL, CAMERA_HEIGHT, WIDTH, HEIGHT)
    assert exact == pytest.approx(ROTATION, abs=1e-9)
    with pytest.raises(ValueError, match="two"):
        rotation_from_tracks(world[:1], project(world[:1]), FOCAL, CAMERA_HEIGHT, WIDTH, HEIGHT)


def test_a_camera_without_focal_length_is_refused():
    with pytest.raises(ValueError, match="focal"):
        feet_in_world(np.zeros((1, 2, 3)), ACROSS, LENGTH, np.zeros((1, 33, 3)), 0.0, ROTATION, CAMERA_HEIGHT,
                      WIDTH, HEIGHT)


def test_dorsiflexion_sign_and_undefined_sideways_foot():
    ankle, knee = np.array([[0.0, 0.1, 0.0]]), np.array([[0.0, 0.55, 0.0]])
    z = np.array([[0.0, 0.0, 1.0]])
    heel = ankle + [-0.05, -0.06, 0.0]
    up, down = heel + [0.2, 0.05, 0.0], heel + [0.2, -0.05, 0.0]    # forwards = +x
    assert ankle_dorsiflexion(knee, ankle, heel, up, z)[0] == pytest.approx(math.degrees(math.atan2(.05, .2)))
    assert ankle_dorsiflexion(knee, ankle, heel, down, z)[0] == pytest.approx(-math.degrees(math.atan2(.05, .2)))
    # a shank leaning forwards over a flat foot is dorsiflexion too (as in a squat)
    lean = ankle + [0.45 * math.sin(.3), 0.45 * math.cos(.3), 0.0]
    flat = heel + [0.22, 0.0, 0.0]
    assert ankle_dorsiflexion(lean, ankle, heel, flat, z)[0] == pytest.approx(math.degrees(.3))
    sideways = heel + [0.0, 0.0, 0.22]
    assert math.isnan(ankle_dorsiflexion(knee, ankle, heel, sideways, z)[0])
