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


def _segments(per_frame: list[list[tuple[int, np.ndarray]]], segment: int) -> tuple[list, list[int]]:
    """Frames as the pose2d stage stores them: ids given per segment; returns (frames, segment starts)."""
    frames = []
    for i, people in enumerate(per_frame):
        frame = common_pb2.FramePoses2D(frame_index=i, timestamp_s=i / 30)
        for source_id, pose in people:
            frame.persons.append(common_pb2.Person2D(track_id=source_id, score=0.9, coco17=to_proto(pose)))
        frames.append(frame)
    return frames, list(range(0, len(per_frame), segment))


def test_people_crossing_unseen_at_a_segment_seam_keep_their_identities():
    # Two people walk towards each other at 6 px/frame and pass each other at frame 128, the seam between two
    # 128-frame segments, while the 2D stage misses both (frames 122-133). Its ids restart after the seam
    # (A was 0 and becomes 1). The track that held A before the seam must hold A after it.
    seam, speed, frames = 128, 6.0, 200
    a0, b0 = _pose(0, 400, size=300), _pose(0, 400, size=300)
    per_frame = []
    for f in range(frames):
        if seam - 6 <= f < seam + 6:
            per_frame.append([])
            continue
        a, b = a0.copy(), b0.copy()
        a[:, 0] += 1000 + (f - seam) * speed
        b[:, 0] += 1000 - (f - seam) * speed
        ids = (0, 1) if f < seam else (1, 0)
        per_frame.append([(ids[0], a), (ids[1], b)])
    msgs, starts = _segments(per_frame, seam)
    tracks = link_tracks(detections_from_frames(msgs, starts), frames)
    assert len(tracks) == 2
    for track in tracks:
        x = track.as_array()[:, :, 0].mean(axis=1)
        seen = track.as_array()[:, :, 2].max(axis=1) > 0
        direction = np.sign(np.diff(x[seen]))
        assert track.frame_count == frames
        assert np.all(direction == direction[0])  # one person walks one way: no swap at the seam


def test_ids_are_a_cue_within_a_segment_only():
    pose = _pose(300, 300)
    per_frame = [[(7, pose)]] * 10
    msgs, starts = _segments(per_frame, 5)
    dets = detections_from_frames(msgs, starts)
    assert [d.segment for f in range(10) for d in dets[f]] == [1] * 5 + [2] * 5
    assert dets[0][0].source_id == 7
    assert len(link_tracks(dets, 10)) == 1


def test_a_person_the_2d_stage_followed_through_a_2s_occlusion_stays_one_track():
    """Within one segment the 2D stage's id holds across a 50-frame gap, after which the person is a
    person size away from where the constant-velocity prediction puts them (they stopped while hidden)."""
    walker, other = _pose(100, 200), _pose(600, 200)
    per_frame = []
    for i in range(90):
        w = walker.copy()
        w[:, 0] += min(i, 20) * 4
        people = [(1, other)] + ([] if 20 < i <= 70 else [(0, w)])
        frame = common_pb2.FramePoses2D(frame_index=i, timestamp_s=i / 30)
        for tid, p in people:
            frame.persons.append(common_pb2.Person2D(track_id=tid, score=0.9, coco17=to_proto(p)))
        per_frame.append(frame)
    dets = detections_from_frames(per_frame)
    assert len(link_tracks(dets, 90, max_gap=60)) == 2
    # without the 2D stage's id (another segment), the far reappearance is a new person
    for frame in dets.values():
        for d in frame:
            if d.frame > 70:
                d.segment = 1
    assert len(link_tracks(dets, 90, max_gap=60)) == 3
