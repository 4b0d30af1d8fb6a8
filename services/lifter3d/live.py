"""Live 3D: the 2D of each frame of one stream in, each person's 3D in that frame out, causally.

``LiveLifter`` is what one ``Lifter3D.Stream`` call holds. Per ``track_id`` (the live 2D stream's
ids are stable for its whole life) it keeps a window of the last ``receptive_field`` frames of 2D;
each new frame is lifted by the causal GAST-Net from its window alone (its frame and the 26 before
it: nothing from the future, so the answer comes as soon as the frame does), computed one frame at a
time by ``streaming.CausalStream`` (the same numbers as the model run on the window). Until a track
has a full window, the window is padded at its start with its first frame, as the batch lift pads a
sequence's ends.

What differs from the batch lift (``lift.lift_sequence`` + ``world.place_in_world``), all because
only the past is known:

* 2D clean-up: a joint scoring under 0.3 keeps its last good position (no interpolation, no
  smoothing in time); a track missing for a few frames has its last 2D repeated over the gap when it
  comes back; one missing for more than ``LIVE_TRACK_MAX_GAP`` frames is forgotten.
* Bone lengths: each bone gets its median length over the track's last ``HISTORY_FRAMES`` outputs.
* Orientation: the camera's pitch comes from the median up direction (ankles -> thorax) of those
  outputs (``lift.camera_to_world``).
* Root placement, as simple as can be said honestly: the pelvis position in the camera frame from a
  pinhole fit of this frame's 3D to its own 2D (``camera.fit_root_translation``, focal length from the
  caller or the 57.5-degree prior), not smoothed in time; horizontal position (x, z) taken from it,
  and height from the feet: the lower ankle 0.10 m (``contacts.ANKLE_HEIGHT_M``) above the floor
  y = 0 in every frame. No floor fit, no foot contacts or pinning, no vertical root motion.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hpe3d.v1 import common_pb2, lifter3d_pb2
from services.common.arrays import from_proto, to_proto
from services.common.errors import InvalidInput, WeightsMissing
from services.common.live_limits import LIVE_TRACK_MAX_GAP
from services.common.skeletons import H36M17, H36M17_PARENTS, coco17_to_h36m17

from .camera import fit_root_translation, focal_prior
from .contacts import ANKLE_HEIGHT_M
from .keypoints2d import normalize_screen
from .lift import camera_to_world, load_lifter
from .model import TemporalLifterBase
from .streaming import CausalStream

CAUSAL_WEIGHTS = Path(__file__).resolve().parent / "weights" / "gastnet_bandai_27f_causal.pt"
MIN_SCORE = 0.3            # 2D joints below this keep their last good position
HISTORY_FRAMES = 90        # outputs per track kept for bone lengths and the camera's pitch (3 s at 30 fps)
_PELVIS = H36M17.index("pelvis")
_ANKLES = [H36M17.index("left_ankle"), H36M17.index("right_ankle")]


@dataclass
class LiveModel:
    """A loaded causal lifter and the name of its weights file."""

    model: TemporalLifterBase
    name: str


def load_live_model(path: str | Path = CAUSAL_WEIGHTS) -> LiveModel:
    """The causal lifter the live stream runs. ``WeightsMissing`` naming the file when it is absent;
    ``ValueError`` when the file holds a model that looks ahead (not causal)."""
    path = Path(path)
    try:
        model = load_lifter(path)
    except FileNotFoundError as exc:
        raise WeightsMissing(f"live 3D needs the causal lifter weights {path} (they ship with the "
                             f"repository as services/lifter3d/weights/{CAUSAL_WEIGHTS.name}): {exc}") from exc
    if not model.causal:
        raise ValueError(f"{path} is not a causal lifter: live 3D cannot wait for future frames")
    return LiveModel(model, path.name)


@dataclass
class _Track:
    """One person's state in a live stream."""

    stream: CausalStream              # the model's per-layer features of the track's recent frames
    held: np.ndarray                  # [17, 3] the last COCO-17 input after holding low-score joints
    last_frame: int                   # stream frame number when last seen
    frames: int = 0                   # frames pushed so far (the window holds min(frames, receptive field))
    outputs: deque = field(default_factory=lambda: deque(maxlen=HISTORY_FRAMES))  # [17, 3] camera frame


def hold_low_scores(keypoints: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """COCO-17 ``[17, 3]`` with each joint under ``MIN_SCORE`` at its previous position (when there is one)."""
    out = np.array(keypoints, dtype=np.float32, copy=True)
    if previous is not None:
        low = out[:, 2] < MIN_SCORE
        out[low, :2] = previous[low, :2]
    return out


def median_bone_lengths(history: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """``pose [17, 3]`` (root-relative) rebuilt from the pelvis outwards with every bone at its median
    length over ``history [N, 17, 3]``, each bone keeping its direction."""
    out = pose.copy()
    for child, parent in enumerate(H36M17_PARENTS):
        if parent < 0:
            continue
        length = np.median(np.linalg.norm(history[:, child] - history[:, parent], axis=-1))
        vec = pose[child] - pose[parent]
        out[child] = out[parent] + vec / max(float(np.linalg.norm(vec)), 1e-9) * length
    return out


class LiveLifter:
    """The 3D of every person of each frame of one stream (``lift``), causally."""

    def __init__(self, live: LiveModel, width: int, height: int, focal_px: float = 0.0):
        if width <= 0 or height <= 0:
            raise InvalidInput(f"frame size must be positive, got {width}x{height}")
        if focal_px < 0:
            raise InvalidInput(f"focal_px must be >= 0, got {focal_px}")
        self.live = live
        self.width, self.height = width, height
        self.focal = focal_px or focal_prior(width, height)
        self.receptive_field = live.model.receptive_field()
        self.tracks: dict[int, _Track] = {}
        self.frames = 0

    def _input(self, track: _Track) -> torch.Tensor:
        """``[2, 17, 2]``: the track's held 2D, normalised, and its mirror image (the batch lift's
        test-time flip)."""
        x = normalize_screen(coco17_to_h36m17(track.held)[:, :2], self.width, self.height)
        mirrored = x[H36M17.flip_permutation] * np.array([-1.0, 1.0], np.float32)
        return torch.from_numpy(np.stack([x, mirrored]))

    def _push(self, track: _Track) -> np.ndarray:
        """The root-relative camera-frame pose ``[17, 3]`` of the track's newest frame: the model's
        output for its window averaged with the mirrored input's, mirrored back."""
        pred = track.stream.push(self._input(track)).numpy().astype(np.float64)
        track.frames += 1
        pred[1] = pred[1][H36M17.flip_permutation] * np.array([-1.0, 1.0, 1.0])
        pose = pred.mean(axis=0)
        return pose - pose[_PELVIS]

    def _advance(self, track_id: int, coco17: np.ndarray) -> tuple[_Track, np.ndarray]:
        """Add this frame's 2D to the track (its last 2D repeated over a short gap first) and lift it."""
        track = self.tracks.get(track_id)
        if track is None:
            track = _Track(CausalStream(self.live.model), hold_low_scores(coco17, None), self.frames)
            self.tracks[track_id] = track
        else:
            for _ in range(min(self.frames - track.last_frame - 1, self.receptive_field)):
                self._push(track)
            track.held = hold_low_scores(coco17, track.held)
            track.last_frame = self.frames
        return track, self._push(track)

    def _place(self, track_id: int, track: _Track, pose: np.ndarray) -> lifter3d_pb2.LivePerson3D:
        track.outputs.append(pose)
        history = np.stack(track.outputs)
        cam = median_bone_lengths(history, pose)
        h36m = coco17_to_h36m17(track.held)
        root = fit_root_translation(cam[None], h36m[None, :, :2], h36m[None, :, 2], self.focal,
                                    self.width, self.height)[0]
        placed, _pitch = camera_to_world(np.concatenate([history[:-1], (cam + root)[None]]))
        absolute = placed[-1]
        root_relative = absolute - absolute[_PELVIS]
        world = absolute.copy()
        world[:, 1] += ANKLE_HEIGHT_M - world[_ANKLES, 1].min()
        return lifter3d_pb2.LivePerson3D(
            track_id=track_id, root_relative=to_proto(root_relative.astype(np.float32)),
            world=to_proto(world.astype(np.float32)), keypoints2d=to_proto(track.held),
            window_frames=min(track.frames, self.receptive_field))

    def lift(self, poses: common_pb2.FramePoses2D) -> lifter3d_pb2.LiftStreamReply:
        started = time.perf_counter()
        self.frames += 1
        persons = []
        for person in poses.persons:
            coco17 = from_proto(person.coco17)
            if coco17.shape != (17, 3):
                raise InvalidInput(f"frame {poses.frame_index}: person {person.track_id} coco17 must be [17, 3], "
                                   f"got {list(coco17.shape)}")
            if any(p.track_id == person.track_id for p in persons):
                raise InvalidInput(f"frame {poses.frame_index}: track_id {person.track_id} appears twice")
            track, pose = self._advance(person.track_id, coco17)
            persons.append(self._place(person.track_id, track, pose))
        for tid in [t for t, track in self.tracks.items() if self.frames - track.last_frame > LIVE_TRACK_MAX_GAP]:
            del self.tracks[tid]
        reply = lifter3d_pb2.LiftStreamReply(frame_index=poses.frame_index, timestamp_s=poses.timestamp_s,
                                             model=self.live.name, persons=persons)
        reply.lift_ms = (time.perf_counter() - started) * 1000
        return reply
