"""Root motion: camera prior, root translation, floor and camera pose, contacts and foot pinning.

The scenes are synthetic: a stick-figure walker with known world joints, filmed by a known pinhole camera, and
a perfect "lifter" (the true root-relative camera-frame skeleton), so every figure checked here has an exact
answer.
"""
import numpy as np
import pytest

from services.common.skeletons import H36M17
from services.lifter3d.camera import fit_root_translation, focal_prior, project
from services.lifter3d.contacts import ANKLE_HEIGHT_M, clean_runs, detect_contacts, pin_planted_feet
from services.lifter3d.world import TrackInput, ankles_seen, fit_floor_normal, place_in_world, smooth_trajectory

J = H36M17.index
FPS = 30.0


def walker(frames: int, speed: float = 1.2, start=(0.0, 0.0), heading=0.0, step_s: float = 0.5) -> tuple:
    """World joints ``[F, 17, 3]`` (y up, floor 0) of a stick figure walking along ``heading`` (radians from +x)
    and ``[F, 2]`` true planted flags (left, right): each foot stands still for 60 % of its stride, then
    swings forward 0.12 m high; ankles at ANKLE_HEIGHT_M when planted."""
    t = np.arange(frames) / FPS
    fwd = np.array([np.cos(heading), 0.0, -np.sin(heading)])
    side = np.array([np.sin(heading), 0.0, np.cos(heading)])  # the walker's left
    pelvis = np.array([start[0], 0.92, start[1]]) + np.outer(speed * t, fwd)
    stride = 2 * step_s
    joints = np.zeros((frames, 17, 3))
    planted = np.zeros((frames, 2), dtype=bool)
    for k, (ankle, knee, hip, sign, phase) in enumerate(
            [(J("left_ankle"), J("left_knee"), J("left_hip"), 1.0, 0.0),
             (J("right_ankle"), J("right_knee"), J("right_hip"), -1.0, 0.5)]):
        cycle = (t / stride + phase) % 1.0
        cycles = np.floor(t / stride + phase)
        stance = cycle < 0.6
        # the foot lands at the pelvis's position a little ahead and stays for the stance
        land_t = (cycles - phase) * stride
        plant = speed * (land_t + 0.3 * stride)
        swing = np.clip((cycle - 0.6) / 0.4, 0, 1)
        along = np.where(stance, plant, plant + swing * speed * stride)
        height = np.where(stance, 0.0, 0.12 * np.sin(np.pi * swing))
        foot = np.array([start[0], ANKLE_HEIGHT_M, start[1]]) + np.outer(along, fwd) + 0.1 * sign * side
        foot[:, 1] += height
        joints[:, ankle] = foot
        joints[:, hip] = pelvis + 0.1 * sign * side
        joints[:, knee] = (joints[:, hip] + foot) / 2 + 0.05 * fwd
        planted[:, k] = stance
    joints[:, J("pelvis")] = pelvis
    up = np.array([0.0, 1.0, 0.0])
    for name, h, s in [("spine", 0.25, 0), ("thorax", 0.5, 0), ("neck_nose", 0.6, 0), ("head_top", 0.78, 0),
                       ("left_shoulder", 0.48, 1), ("right_shoulder", 0.48, -1), ("left_elbow", 0.2, 1),
                       ("right_elbow", 0.2, -1), ("left_wrist", -0.05, 1), ("right_wrist", -0.05, -1)]:
        joints[:, J(name)] = pelvis + h * up + 0.18 * s * side
    return joints, planted


def camera(pitch_deg: float, height: float):
    """World -> camera rotation rows (x right, y down, z forward) for a camera at (0, height, 0) looking along
    -z and tilted down by ``pitch_deg``."""
    p = np.deg2rad(pitch_deg)
    forward = np.array([0.0, -np.sin(p), -np.cos(p)])
    right = np.array([1.0, 0.0, 0.0])
    down = np.cross(forward, right)
    rot = np.stack([right, down, forward])
    return rot, np.array([0.0, height, 0.0])


def film(world: np.ndarray, rot, centre, focal, width, height) -> TrackInput:
    cam = (world - centre) @ rot.T
    pix = project(cam, focal, width, height)
    kp = np.concatenate([pix, np.ones(pix.shape[:-1] + (1,))], axis=-1)
    return TrackInput(cam - cam[:, :1], kp)


def test_focal_prior_uses_the_longer_side():
    f = focal_prior(1920, 1080)
    assert f == pytest.approx(960 / np.tan(np.deg2rad(57.5 / 2)))
    assert focal_prior(1080, 1920) == pytest.approx(f)
    with pytest.raises(ValueError):
        focal_prior(0, 1080)


def test_root_translation_is_recovered_exactly_from_clean_projections():
    rng = np.random.default_rng(0)
    rel = rng.normal(scale=0.4, size=(6, 17, 3))
    rel -= rel[:, :1]
    true_t = np.stack([rng.uniform(-1, 1, 6), rng.uniform(-0.5, 0.5, 6), rng.uniform(3, 12, 6)], axis=1)
    pix = project(rel + true_t[:, None], 1200.0, 1920, 1080)
    t = fit_root_translation(rel, pix, np.ones((6, 17)), 1200.0, 1920, 1080)
    assert np.allclose(t, true_t, atol=1e-6)
    # a joint with zero weight does not matter, however wrong its 2D is
    pix[:, 5] += 300
    weights = np.ones((6, 17))
    weights[:, 5] = 0
    assert np.allclose(fit_root_translation(rel, pix, weights, 1200.0, 1920, 1080), true_t, atol=1e-6)


def test_smoothing_removes_a_depth_outlier_and_keeps_a_straight_path():
    t = np.stack([np.linspace(0, 3, 90), np.zeros(90), np.full(90, 6.0)], axis=1)
    noisy = t.copy()
    noisy[40, 2] = 9.0  # one frame's depth badly off
    out = smooth_trajectory(noisy, FPS)
    assert np.abs(out - t).max() < 0.02


def test_walker_is_placed_on_the_floor_with_its_travel_camera_and_contacts():
    width, height, focal = 1280, 720, 900.0
    world, planted = walker(150, start=(-2.0, -6.0))
    rot, centre = camera(12.0, 1.6)
    cam, (placed,) = place_in_world([film(world, rot, centre, focal, width, height)], width, height, focal, FPS)
    assert not cam.focal_from_prior and cam.focal_px == focal
    assert cam.pitch_deg == pytest.approx(12.0, abs=1.0)
    assert cam.height_m == pytest.approx(1.6, rel=0.05)
    out = placed.world
    assert out.shape == (150, 17, 3)
    # the world frame is the camera's: origin below it, x its right; so the true scene maps one to one
    assert np.abs(out[:, 0] - world[:, 0]).max() < 0.08
    travelled = np.linalg.norm(out[-1, 0, [0, 2]] - out[0, 0, [0, 2]])
    assert travelled == pytest.approx(1.2 * 149 / FPS, rel=0.05)
    # contacts found, and planted feet rest on the floor without sliding
    got = placed.contacts
    assert (got & planted).sum() / planted.sum() > 0.8
    assert (got & ~planted).sum() / max(got.sum(), 1) < 0.2
    for k, joint in enumerate((J("left_ankle"), J("right_ankle"))):
        both = got[1:, k] & got[:-1, k]
        slide = np.linalg.norm(np.diff(out[:, joint][:, [0, 2]], axis=0), axis=1)[both]
        assert slide.max() < 0.005
        assert np.allclose(out[got[:, k], joint, 1], ANKLE_HEIGHT_M, atol=1e-6)


def test_two_people_share_one_world_frame():
    width, height, focal = 1920, 1080, 1500.0
    a, _ = walker(90, start=(-1.5, -7.0))
    b, _ = walker(90, start=(1.0, -5.0), heading=np.pi)
    rot, centre = camera(8.0, 1.4)
    _, placed = place_in_world([film(w, rot, centre, focal, width, height) for w in (a, b)], width, height,
                               focal, FPS)
    gap_true = np.linalg.norm(a[:, 0] - b[:, 0], axis=1)
    gap = np.linalg.norm(placed[0].world[:, 0] - placed[1].world[:, 0], axis=1)
    assert np.abs(gap - gap_true).max() < 0.1
    assert np.abs(placed[1].world[:, 0] - b[:, 0]).max() < 0.1


def test_a_single_frame_is_placed_standing_on_the_floor():
    world, _ = walker(1)
    world[:, :, 2] -= 4.0
    rot, centre = camera(5.0, 1.5)
    cam, (placed,) = place_in_world([film(world, rot, centre, 1000.0, 1280, 720)], 1280, 720)
    assert cam.focal_from_prior
    assert placed.world.shape == (1, 17, 3) and placed.contacts.shape == (1, 2)
    # one frame: the floor's tilt comes from the body's lean alone, so the two ankles need not be level
    ankles = placed.world[0, [J("left_ankle"), J("right_ankle")], 1]
    assert ankles.mean() == pytest.approx(ANKLE_HEIGHT_M, abs=1e-6) and np.ptp(ankles) < 0.05
    assert placed.world[0, J("head_top"), 1] > 1.4


def test_clean_runs_fills_holes_and_drops_flicker():
    mask = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    assert clean_runs(mask, min_run=2, max_hole=1).astype(int).tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]


def test_detect_contacts_needs_low_and_slow():
    world = np.zeros((30, 17, 3))
    world[:, :, 1] = 1.0
    left, right = J("left_ankle"), J("right_ankle")
    world[:, left, 1] = ANKLE_HEIGHT_M  # standing
    world[:, right, 1] = ANKLE_HEIGHT_M
    world[:, right, 0] = np.arange(30) * 0.1  # sliding fast along the floor: 3 m/s
    got = detect_contacts(world, FPS)
    assert got[:, 0].all() and not got[:, 1].any()


def test_pinning_stops_sliding_and_keeps_a_jump():
    frames = 40
    world = np.zeros((frames, 17, 3))
    world[:, :, 1] = 0.9
    left, right = J("left_ankle"), J("right_ankle")
    world[:, [left, right], 1] = ANKLE_HEIGHT_M + 0.02
    world[:, :, 0] += np.arange(frames)[:, None] * 0.01  # the whole body drifts 1 cm/frame
    world[15:25, :, 1] += 0.3  # a jump: both feet in the air
    contacts = np.zeros((frames, 2), dtype=bool)
    contacts[:15] = True
    contacts[25:] = True
    out = pin_planted_feet(world, contacts, FPS)
    for span in (slice(0, 15), slice(25, frames)):
        assert np.ptp(out[span, left, 0]) < 1e-9
        assert np.allclose(out[span, [left, right], 1], ANKLE_HEIGHT_M)
    assert out[20, left, 1] > ANKLE_HEIGHT_M + 0.25  # still in the air mid-jump
    assert np.allclose(out - out[:, :1], world - world[:, :1])  # the posture is untouched


def test_feet_not_seen_in_2d_are_never_planted():
    width, height, focal = 1280, 720, 900.0
    world, planted = walker(90, start=(-1.0, -5.0))
    rot, centre = camera(10.0, 1.5)
    track = film(world, rot, centre, focal, width, height)
    track.keypoints[40:, [J("left_ankle"), J("right_ankle")], 2] = 0.0  # the feet leave the picture
    _, (placed,) = place_in_world([track], width, height, focal, FPS)
    assert placed.contacts[:38].any() and not placed.contacts[40:].any()
    world_contacts = detect_contacts(placed.world, FPS, seen=np.zeros((90, 2), bool))
    assert not world_contacts.any()


def test_feet_the_2d_never_saw_neither_tilt_nor_lift_the_floor():
    # two walkers; the 2D never sees the second one's feet, and the lifter's guess of them is 40 cm off towards
    # the camera and 10 cm low (legs leaning 25 degrees): floor, pitch and height come from the first one's feet
    width, height, focal = 1280, 720, 900.0
    a, _ = walker(90, start=(-1.5, -6.0))
    b, _ = walker(90, start=(1.0, -4.0), heading=np.pi)
    rot, centre = camera(10.0, 1.5)
    seen, unseen = (film(w, rot, centre, focal, width, height) for w in (a, b))
    off = np.array([0.0, 0.1, -0.4])   # camera frame: y down, z forward
    unseen.root_relative[:, [J("left_ankle"), J("right_ankle")]] += off
    unseen.root_relative[:, [J("left_knee"), J("right_knee")]] += off / 2
    unseen.keypoints[:, [J("left_ankle"), J("right_ankle")], 2] = 0.0
    cam, placed = place_in_world([seen, unseen], width, height, focal, FPS)
    assert cam.pitch_deg == pytest.approx(10.0, abs=1.0)
    assert cam.height_m == pytest.approx(1.5, rel=0.05)
    assert np.abs(placed[0].world[:, 0] - a[:, 0]).max() < 0.1
    assert np.median(np.abs(placed[1].world[:, 0] - b[:, 0])) < 0.1


def test_a_short_miss_still_counts_as_seen():
    kp = np.ones((30, 17, 3))
    kp[5:8, J("left_ankle"), 2] = 0.1  # 3 frames: filled in from the neighbours
    kp[10:30, J("right_ankle"), 2] = 0.0  # out of the picture
    seen = ankles_seen(kp, FPS)
    assert seen[:, 0].all()
    assert seen[:10, 1].all() and not seen[10:, 1].any()


def test_contacts_follow_a_floor_that_drifts_in_height():
    # an estimated floor tilted by a few degrees: the walker's planted ankles rise 0.3 m along the path
    world, planted = walker(150)
    world[..., 1] += np.linspace(0, 0.3, 150)[:, None]
    got = detect_contacts(world, FPS)
    assert (got & planted).sum() / planted.sum() > 0.8
    assert (got[100:] & planted[100:]).sum() / planted[100:].sum() > 0.8  # also where the floor is 0.2 m up
    assert (got & ~planted).sum() / got.sum() < 0.2


def test_level_pelvis_paths_set_the_floor_where_no_foot_is_seen():
    # no ankle on the floor at all and a body up 8 degrees off: two people walking in depth keep their pelvis at
    # their own height, which tilts the floor normal back to the truth; without the paths it stays at the prior
    rot, centre = camera(12.0, 1.5)
    truth = rot @ np.array([0.0, 1.0, 0.0])    # the world's up in camera coordinates
    a, _ = walker(90, start=(-0.8, -2.0), heading=np.pi / 2)     # away from the camera
    b, _ = walker(90, start=(0.8, -6.0), heading=-np.pi / 2)     # towards it
    paths = [(w[:, J("pelvis")] + [0.0, 0.1 * k, 0.0] - centre) @ rot.T for k, w in enumerate((a, b))]
    tilt = rot @ np.array([0.0, np.cos(np.deg2rad(8.0)), np.sin(np.deg2rad(8.0))])
    angle = lambda n: np.degrees(np.arccos(np.clip(n @ truth, -1, 1)))  # noqa: E731
    assert angle(fit_floor_normal(np.zeros((0, 3)), tilt)) == pytest.approx(8.0, abs=0.01)
    assert angle(fit_floor_normal(np.zeros((0, 3)), tilt, level=paths)) < 0.5

