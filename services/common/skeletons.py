"""Skeleton definitions and the mappings between them, in one place.

Three layouts cross this system:

* ``COCO17`` -- what the 2D stage emits (and what HRNet and most 2D models emit).
* ``H36M17`` -- what the 3D lifter consumes and emits (Human3.6M's 17-joint order, as used by
  VideoPose3D and GAST-Net).
* ``BLAZEPOSE33`` -- the landmarks of BlazePose GHUM, kept as the model gives them.

Arrays of keypoints are ``[..., J, C]`` with ``C`` = (x, y, score) in 2D or (x, y, z) in 3D.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """A named joint order plus the bones that connect the joints (pairs of indices)."""

    name: str
    joints: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    left: tuple[int, ...]
    right: tuple[int, ...]

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Joint permutation that swaps every left joint with its right twin (for mirroring)."""
        perm = np.arange(self.num_joints)
        perm[list(self.left)] = self.right
        perm[list(self.right)] = self.left
        return perm


COCO17 = Skeleton(
    name="coco17",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    bones=(
        (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
        (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
    ),
    left=(1, 3, 5, 7, 9, 11, 13, 15),
    right=(2, 4, 6, 8, 10, 12, 14, 16),
)

H36M17 = Skeleton(
    name="h36m17",
    joints=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head_top",
        "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
    ),
    bones=(
        (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10),
        (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
    ),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
)

# Human3.6M's 17-joint parent of every joint (-1 for the root), the tree GAST-Net's graph is built on.
H36M17_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

BLAZEPOSE33 = Skeleton(
    name="blazepose33",
    joints=(
        "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
        "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "left_heel", "right_heel", "left_foot_index", "right_foot_index",
    ),
    bones=(
        (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
        (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
        (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
        (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
        (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
    ),
    left=(1, 2, 3, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
    right=(4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32),
)

# BlazePose-33 index of every COCO-17 joint: COCO's 17 joints are a subset of BlazePose's 33.
BLAZEPOSE33_TO_COCO17 = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])


def blazepose33_to_coco17(landmarks: np.ndarray) -> np.ndarray:
    """Pick COCO-17 joints out of BlazePose-33 landmarks ``[..., 33, C]`` -> ``[..., 17, C]``."""
    return landmarks[..., BLAZEPOSE33_TO_COCO17, :]


def coco17_to_h36m17(keypoints: np.ndarray) -> np.ndarray:
    """Map COCO-17 2D keypoints ``[..., 17, 3]`` (x, y, score) to Human3.6M-17 ``[..., 17, 3]``.

    Joints that both layouts share are copied. The others are built from COCO joints:

    * pelvis    = midpoint of the hips
    * thorax    = midpoint of the shoulders
    * spine     = midpoint of pelvis and thorax
    * neck_nose = the nose
    * head_top  = centre of eyes and ears, pushed away from the thorax by half their distance
                  (the top of the skull sits about half a head above the ear line)

    A built joint's score is the lowest score among the joints it is built from. The lifter is
    trained on 2D made by this very function from projected motion capture, so inference and
    training see the same construction.
    """
    k = np.asarray(keypoints, dtype=np.float32)
    out = np.zeros(k.shape[:-2] + (17, k.shape[-1]), dtype=np.float32)
    c = COCO17.index
    shared = {
        1: c("right_hip"), 2: c("right_knee"), 3: c("right_ankle"),
        4: c("left_hip"), 5: c("left_knee"), 6: c("left_ankle"),
        9: c("nose"),
        11: c("left_shoulder"), 12: c("left_elbow"), 13: c("left_wrist"),
        14: c("right_shoulder"), 15: c("right_elbow"), 16: c("right_wrist"),
    }
    for h, co in shared.items():
        out[..., h, :] = k[..., co, :]

    def built(indices: list[int]) -> np.ndarray:
        part = k[..., indices, :]
        joint = part.mean(axis=-2)
        if k.shape[-1] == 3:
            joint[..., 2] = part[..., 2].min(axis=-1)
        return joint

    pelvis = built([c("left_hip"), c("right_hip")])
    thorax = built([c("left_shoulder"), c("right_shoulder")])
    face = built([c("left_eye"), c("right_eye"), c("left_ear"), c("right_ear")])
    out[..., 0, :] = pelvis
    out[..., 8, :] = thorax
    out[..., 7, :] = (pelvis + thorax) / 2
    head = face.copy()
    head[..., :2] = face[..., :2] + 0.5 * (face[..., :2] - thorax[..., :2])
    out[..., 10, :] = head
    if k.shape[-1] == 3:
        out[..., 7, 2] = np.minimum(pelvis[..., 2], thorax[..., 2])
        out[..., 10, 2] = np.minimum(face[..., 2], thorax[..., 2])
    return out
