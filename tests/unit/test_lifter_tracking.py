import numpy as np

from hpe3d.v1 import common_pb2
from services.common.arrays import to_proto
from services.lifter3d.tracking import detections_from_frames, link_tracks, pose_distance


def _pose(cx: float, cy: float, size: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(int(cx * 7 + cy))
    xy = np.stack([cx + rng.uniform(-0.5, 0.5, 17) * size, cy + rng.uniform(-1, 1, 17) * size], axis=1)
    return np.concatenate([xy, np.full((17, 1), 0.9)], axis=1).astype(np.float32)


def _frames(poses_per_frame: list[list[np.ndarray]]) -> list[common_pb2.FramePoses2D]:
    frames = []
    for i, poses in enumerate(poses_per_frame):
        frame = common_pb2.FramePoses2D(frame_index=i, timestamp_s=i / 30)
        for j, p in enumerate(poses):
            frame.persons.append(common_pb2.Person2D(track_id=j, score=0.9, coco17=to_proto(p)))
        frames.append(frame)
    return frames


def test_pose_distance_is_relative_to_person_size():
    a = _pose(100, 100)
    assert pose_distance(a, a) == 0
    shifted = a.copy()
    shifted[:, 0] += 10
    assert 0 < pose_distance(a, shifted) < 0.2
    unseen = a.copy()
    unseen[:, 2] = 0
    assert pose_distance(a, unseen) == float("inf")


def test_two_people_keep_their_tracks_when_listed_in_swapped_order():
    left, right = _pose(100, 200), _pose(600, 200)
    per_frame = []
    for i in range(20):
        l, r = left.copy(), right.copy()
        l[:, 0] += i * 2
        r[:, 0] -= i * 2
        per_frame.append([l, r] if i % 2 == 0 else [r, l])  # the 2D stage's order changes
    tracks = link_tracks(detections_from_frames(_frames(per_frame)), 20)
    assert len(tracks) == 2
    for track in tracks:
        kp = track.as_array()
        assert kp.shape == (20, 17, 3)
        start_x = kp[0, :, 0].mean()
        assert np.all(np.abs(kp[:, :, 0].mean(axis=1) - start_x) < 60)  # never jumps to the other person


def test_short_gap_is_bridged_and_long_gap_splits():
    pose = _pose(300, 300)
    per_frame = [[pose]] * 5 + [[]] * 3 + [[pose]] * 5
    tracks = link_tracks(detections_from_frames(_frames(per_frame)), 13, max_gap=5)
    assert len(tracks) == 1
    assert tracks[0].frame_count == 13
    assert tracks[0].detected_frames == 10
    assert np.all(tracks[0].as_array()[5:8, :, 2] == 0)

    per_frame = [[pose]] * 5 + [[]] * 10 + [[pose]] * 5
    tracks = link_tracks(detections_from_frames(_frames(per_frame)), 20, max_gap=5)
    assert [t.first_frame for t in tracks] == [0, 15]
    assert [t.frame_count for t in tracks] == [5, 5]
