"""The tracker of services/pose2d/person_tracking.py on synthetic people: boxes and COCO-17 keypoints
of walking persons, hidden for a while, crossing each other, at 30 frames/s."""
import numpy as np
import pytest

from services.pose2d.person_tracking import (BoxKalman, Observation, PersonTracker, TrackerOptions,
                                             keypoint_similarity)

# COCO-17 joints of an upright person, as fractions of their box (x, y)
TEMPLATE = np.array([[.5, .06], [.55, .04], [.45, .04], [.6, .06], [.4, .06], [.7, .2], [.3, .2], [.8, .35],
                     [.2, .35], [.85, .48], [.15, .48], [.62, .52], [.38, .52], [.63, .75], [.37, .75],
                     [.64, .97], [.36, .97]])


def person(cx: float, cy: float = 300.0, height: float = 200.0, follows: int = -1, arms: float = 0.0) -> Observation:
    width = 0.4 * height
    box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
    kp = np.ones((17, 3))
    kp[:, 0] = box[0] + TEMPLATE[:, 0] * width
    kp[:, 1] = box[1] + TEMPLATE[:, 1] * height
    kp[[9, 10], 1] -= arms * height          # a pose detail that tells two people apart
    return Observation(box, kp, 0.9, follows)


def run(frames: list[list[Observation]], **options) -> list[list[int]]:
    tracker = PersonTracker(TrackerOptions(**options))
    return [tracker.update(obs) for obs in frames]


def test_a_walking_person_keeps_one_id():
    ids = run([[person(100 + 4 * f)] for f in range(90)])
    assert {i for frame in ids for i in frame} == {0}


@pytest.mark.parametrize("hidden_s, where", [(2.0, 1.0), (2.0, 0.0), (1.0, 0.5), (0.3, 1.0)],
                         ids=["2s-on-course", "2s-stopped-behind", "1s-slowed", "short"])
def test_a_person_hidden_up_to_2s_keeps_their_id(hidden_s, where):
    """Walking 4 px/frame, hidden for ``hidden_s``, then seen again ``where`` of the way to where the
    constant-velocity prediction puts them (1: on course, 0: they stopped when hidden)."""
    before, hidden = 30, round(30 * hidden_s)
    frames = [[person(100 + 4 * f), person(900)] for f in range(before)]
    last = 100 + 4 * (before - 1)
    frames += [[person(900)] for _ in range(hidden)]
    back = last + where * 4 * (hidden + 1)
    frames += [[person(back + 4 * k), person(900)] for k in range(20)]
    ids = run(frames)
    walker_before, walker_after = ids[before - 1][0], ids[-1][0]
    assert walker_after == walker_before == 0
    assert all(frame[-1] == 1 for frame in ids)          # the one standing still never changes either


def test_someone_else_appearing_far_away_gets_a_new_id():
    frames = [[person(100 + 4 * f)] for f in range(30)] + [[] for _ in range(30)]
    frames += [[person(1200)] for _ in range(5)]         # 3.6 person heights from the prediction
    ids = run(frames)
    assert ids[0] == [0] and ids[-1] == [1]


def test_a_track_hidden_longer_than_the_limit_ends():
    frames = [[person(300)] for _ in range(10)] + [[] for _ in range(61)] + [[person(300)]]
    assert run(frames)[-1] == [1]
    frames = [[person(300)] for _ in range(10)] + [[] for _ in range(59)] + [[person(300)]]
    assert run(frames)[-1] == [0]


@pytest.mark.parametrize("back_hidden", [False, True], ids=["both-seen", "back-one-hidden"])
@pytest.mark.parametrize("regions_swap", [False, True], ids=["own-regions", "regions-swapped"])
def test_two_people_crossing_do_not_swap(back_hidden, regions_swap):
    """A walks right, B walks left, 8 px/frame each; they overlap in the middle (B behind A, or
    hidden by A). With ``regions_swap`` the keypoint model's regions latch onto the wrong person
    after the crossing (each observation says it came from the other's region)."""
    frames = []
    for f in range(80):
        xa, xb = 100 + 8 * f, 740 - 8 * f
        crossing = abs(xa - xb) < 80
        a = person(xa, follows=-1, arms=0.0)
        b = person(xb, cy=305, height=190, arms=0.3)
        if regions_swap and xa > xb:
            a, b = (Observation(a.box, a.keypoints, a.score, 1), Observation(b.box, b.keypoints, b.score, 0))
        frames.append([a] if crossing and back_hidden else [a, b])
    ids = run(frames)
    for f, frame in enumerate(ids):
        assert frame[0] == 0, f"frame {f}: A has id {frame[0]}"
        if len(frame) == 2:
            assert frame[1] == 1, f"frame {f}: B has id {frame[1]}"


def test_two_people_side_by_side_keep_their_ids_at_30_frames_per_second_jitter():
    rng = np.random.default_rng(3)
    frames = [[person(300 + rng.normal(0, 3)), person(420 + rng.normal(0, 3))] for _ in range(60)]
    ids = run(frames)
    assert all(frame == [0, 1] for frame in ids)


def test_kalman_learns_the_velocity():
    k = BoxKalman((0, 0, 40, 100))
    for f in range(1, 20):
        k.predict()
        k.update((5 * f, 0, 5 * f + 40, 100))
    box = k.predict()
    assert box[0] == pytest.approx(100, abs=3)


def test_keypoint_similarity():
    a = person(300).keypoints
    assert keypoint_similarity(a, a, 200) == pytest.approx(1.0)
    assert keypoint_similarity(a, person(330).keypoints, 200) < 0.5
    none_seen = a.copy()
    none_seen[:, 2] = 0
    assert keypoint_similarity(a, none_seen, 200) is None
