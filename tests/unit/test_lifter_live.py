"""The live lifter without gRPC: the causal GAST-Net run one frame at a time equals the model run on
each frame's window, and the live stream's bookkeeping (tracks, gaps, held joints, root placement)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hpe3d.v1 import common_pb2
from services.common.arrays import from_proto, to_proto
from services.common.live_limits import LIVE_TRACK_MAX_GAP
from services.common.skeletons import H36M17, blazepose33_to_coco17
from services.lifter3d.contacts import ANKLE_HEIGHT_M
from services.lifter3d.lift import lift_sequence
from services.lifter3d.live import LiveLifter, hold_low_scores, load_live_model
from services.lifter3d.model import GASTNet
from services.lifter3d.streaming import CausalStream

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """As the lifter process runs (HPE3D_LIFTER_THREADS=1): small tensors, no hand-offs between threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def live_model():
    return load_live_model()


@pytest.fixture(scope="module")
def office_coco17() -> np.ndarray:
    """[24, 17, 3] COCO-17 of the test clip's main person (MediaPipe's own Pose, a real 2D track)."""
    frames = np.array(json.loads((DATA / "mediapipe_pose_24f.json").read_text())["frames"], np.float32)
    xy_score = np.concatenate([frames[..., :2], np.ones_like(frames[..., :1])], axis=-1)
    return np.stack([blazepose33_to_coco17(k) for k in xy_score])


def windows_of(sequence: torch.Tensor, t: int, field: int) -> torch.Tensor:
    """The window of frame t, padded at the start with frame 0: [B, field, 17, 2]."""
    return sequence[[max(0, k) for k in range(t - field + 1, t + 1)]].permute(1, 0, 2, 3)


def test_shipped_live_weights_are_a_causal_27_frame_gastnet(live_model):
    assert isinstance(live_model.model, GASTNet) and live_model.model.causal
    assert live_model.model.receptive_field() == 27
    assert live_model.name == "gastnet_bandai_27f_causal.pt"


@pytest.mark.parametrize("widths", [(3, 3, 3), (3, 3, 3, 3), (3, 5)])
def test_causal_stream_equals_the_model_on_each_window(widths):
    torch.manual_seed(1)
    model = GASTNet(filter_widths=widths, causal=True, channels=16).eval()
    for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:  # not the identity
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    sequence = torch.randn(model.receptive_field() + 6, 3, 17, 2) * 0.4
    stream = CausalStream(model)
    with torch.no_grad():
        for t in range(len(sequence)):
            expected = model(windows_of(sequence, t, model.receptive_field()))[:, -1]
            assert torch.allclose(stream.push(sequence[t]), expected, atol=2e-5), f"frame {t}"


def test_causal_stream_refuses_a_model_that_looks_ahead():
    with pytest.raises(ValueError, match="causal"):
        CausalStream(GASTNet(causal=False, channels=16).eval())
    with pytest.raises(ValueError, match="eval"):
        CausalStream(GASTNet(causal=True, channels=16))


def frame(index: int, people: dict[int, np.ndarray]) -> common_pb2.FramePoses2D:
    return common_pb2.FramePoses2D(frame_index=index, timestamp_s=index / 30, persons=[
        common_pb2.Person2D(track_id=tid, coco17=to_proto(kp)) for tid, kp in people.items()])


def test_live_lift_is_the_batch_causal_lift_of_the_frames_so_far(live_model, office_coco17):
    """Before bone lengths and placement, the live pose of frame t is what the batch lift (no time
    smoothing, same flip averaging) gives for frame t of the causal model: nothing from the future."""
    lifter = LiveLifter(live_model, 640, 360)
    raw = []
    original = lifter._push
    lifter._push = lambda track: raw.append(original(track)) or raw[-1]
    for t, kp in enumerate(office_coco17):
        lifter.lift(frame(t, {0: kp}))
    batch = lift_sequence(office_coco17, 640, 360, live_model.model, smooth_sigma=0.0, fixed_bones=False)
    assert np.abs(np.stack(raw) - batch.camera_raw).max() < 1e-4


def test_live_reply_per_person_with_root_placement(live_model, office_coco17):
    lifter = LiveLifter(live_model, 640, 360)
    for t, kp in enumerate(office_coco17):
        reply = lifter.lift(frame(100 + t, {7: kp}))
        assert (reply.frame_index, len(reply.persons)) == (100 + t, 1)
        person = reply.persons[0]
        assert person.track_id == 7 and person.window_frames == min(t + 1, 27)
        rel, world = from_proto(person.root_relative), from_proto(person.world)
        assert rel.shape == world.shape == (17, 3)
        assert np.allclose(rel[H36M17.index("pelvis")], 0, atol=1e-6)
        assert np.allclose(world - world[0], rel - rel[0], atol=1e-5)      # the same pose, moved
        ankles = [H36M17.index("left_ankle"), H36M17.index("right_ankle")]
        assert world[ankles, 1].min() == pytest.approx(ANKLE_HEIGHT_M, abs=1e-5)
        assert 1.2 < world[H36M17.index("head_top"), 1] < 2.2             # standing, metres
        assert -8 < world[0, 2] < -0.5                                    # in front of the camera
    assert reply.model == "gastnet_bandai_27f_causal.pt" and reply.lift_ms > 0


def test_tracks_are_kept_over_short_gaps_and_forgotten_after_long_ones(live_model, office_coco17):
    lifter = LiveLifter(live_model, 640, 360)
    kp = office_coco17[0]
    lifter.lift(frame(0, {1: kp, 2: kp + [40, 0, 0]}))
    for t in range(1, LIVE_TRACK_MAX_GAP + 2):
        reply = lifter.lift(frame(t, {1: kp}))
    assert [p.track_id for p in reply.persons] == [1]
    assert set(lifter.tracks) == {1}, "a track unseen for more than the gap is forgotten"
    # a short gap: the track comes back with its window continued (its last 2D repeated over the gap)
    before = lifter.lift(frame(100, {1: kp})).persons[0].window_frames
    for t in range(101, 104):
        lifter.lift(frame(t, {}))
    reply = lifter.lift(frame(104, {1: kp}))
    assert reply.persons[0].window_frames == before + 3 + 1


def test_low_score_joints_keep_their_last_good_position():
    previous = np.tile([[10.0, 20.0, 0.9]], (17, 1)).astype(np.float32)
    now = np.tile([[50.0, 60.0, 0.9]], (17, 1)).astype(np.float32)
    now[3, 2] = 0.1
    held = hold_low_scores(now, previous)
    assert held[3].tolist() == pytest.approx([10.0, 20.0, 0.1])
    assert held[4].tolist() == pytest.approx([50.0, 60.0, 0.9])
    assert np.array_equal(hold_low_scores(now, None), now)


def test_bad_input_is_refused(live_model):
    from services.common.errors import InvalidInput
    with pytest.raises(InvalidInput, match="frame size"):
        LiveLifter(live_model, 0, 360)
    lifter = LiveLifter(live_model, 640, 360)
    with pytest.raises(InvalidInput, match=r"\[17, 3\]"):
        lifter.lift(common_pb2.FramePoses2D(frame_index=0, persons=[
            common_pb2.Person2D(track_id=0, coco17=to_proto(np.zeros((5, 3), np.float32)))]))
    same = common_pb2.Person2D(track_id=0, coco17=to_proto(np.ones((17, 3), np.float32)))
    with pytest.raises(InvalidInput, match="twice"):
        lifter.lift(common_pb2.FramePoses2D(frame_index=1, persons=[same, same]))
