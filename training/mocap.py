"""BVH motion capture: parsing, forward kinematics, and the map to Human3.6M-17 / COCO-17 3D joints.

Written for the Bandai-Namco-Research-Motiondataset BVH files (sets 1 and 2), which share one skeleton::

    joint_Root -> Hips -> {Spine -> Chest -> {Neck -> Head,
                                              Shoulder_L -> UpperArm_L -> LowerArm_L -> Hand_L,
                                              Shoulder_R -> UpperArm_R -> LowerArm_R -> Hand_R},
                           UpperLeg_L -> LowerLeg_L -> Foot_L -> Toes_L,
                           UpperLeg_R -> LowerLeg_R -> Foot_R -> Toes_R}

Every joint there carries six channels ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``: the
position channels replace the joint's OFFSET, and the rotation is the product of the axis rotations in the
order the channels are listed (``Rz @ Rx @ Ry`` for that file), acting on column vectors. The parser reads the
order from each file, so other orders work too. Units in the files are centimetres with +Y up; everything this
module returns is in metres, in the same world frame (+Y up).

The mapping from the BVH joints to the two 17-joint layouts is one table, :data:`HEAD_POINTS` plus
:func:`bvh_to_coco17` / :func:`bvh_to_h36m17`; see their docstrings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CM = 0.01  # BVH unit (centimetre) in metres


@dataclass
class Bvh:
    """A parsed BVH file.

    Attributes:
        names: joint names in file order (parents always come before their children).
        parents: index of each joint's parent, -1 for the root.
        offsets: ``[J, 3]`` rest offsets from the parent, in file units.
        channels: per joint, the channel names in file order (e.g. ``("Xposition", ..., "Yrotation")``).
        frame_time: seconds per frame.
        motion: ``[F, C]`` channel values, C = total number of channels; angles in degrees.
    """

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    frame_time: float
    motion: np.ndarray = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.motion.shape[0])

    def index(self, name: str) -> int:
        return self.names.index(name)


def parse_bvh(text: str) -> Bvh:
    """Parse the text of a BVH file into a :class:`Bvh`.

    Args:
        text: the whole file content.

    Raises:
        ValueError: when the text is not a BVH file this parser understands.
    """
    tokens = re.split(r"\s+", text.strip())
    pos = 0
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []
    if not tokens or tokens[0] != "HIERARCHY":
        raise ValueError("not a BVH file: it does not start with HIERARCHY")
    pos = 1
    pending_end_site = False
    while pos < len(tokens) and tokens[pos] != "MOTION":
        tok = tokens[pos]
        if tok in ("ROOT", "JOINT"):
            names.append(tokens[pos + 1])
            parents.append(stack[-1] if stack else -1)
            offsets.append([0.0, 0.0, 0.0])
            channels.append(())
            pos += 2
        elif tok == "End":
            pending_end_site = True
            pos += 2
        elif tok == "{":
            stack.append(-2 if pending_end_site else len(names) - 1)
            pending_end_site = False
            pos += 1
        elif tok == "}":
            if not stack:
                raise ValueError("unbalanced braces in BVH hierarchy")
            stack.pop()
            pos += 1
        elif tok == "OFFSET":
            values = [float(v) for v in tokens[pos + 1:pos + 4]]
            if stack and stack[-1] >= 0:
                offsets[stack[-1]] = values
            pos += 4
        elif tok == "CHANNELS":
            n = int(tokens[pos + 1])
            channels[stack[-1]] = tuple(tokens[pos + 2:pos + 2 + n])
            pos += 2 + n
        else:
            raise ValueError(f"unexpected token {tok!r} in BVH hierarchy")
    # End sites push -2 on the stack; a joint's parent is the nearest real joint below it.
    if pos >= len(tokens):
        raise ValueError("BVH file has no MOTION section")
    if tokens[pos + 1] != "Frames:" or tokens[pos + 3:pos + 5] != ["Frame", "Time:"]:
        raise ValueError("malformed BVH MOTION header")
    num_frames = int(tokens[pos + 2])
    frame_time = float(tokens[pos + 5])
    values = np.asarray(tokens[pos + 6:], dtype=np.float64)
    num_channels = sum(len(c) for c in channels)
    if values.size != num_frames * num_channels:
        raise ValueError(f"BVH motion has {values.size} values, expected {num_frames} x {num_channels}")
    return Bvh(names, parents, np.asarray(offsets, dtype=np.float64), channels, frame_time,
               values.reshape(num_frames, num_channels))


def load_bvh(path: str | Path) -> Bvh:
    """Read and parse a BVH file from disk."""
    return parse_bvh(Path(path).read_text())


def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[F, 3, 3]`` about one coordinate axis (``"X"``, ``"Y"`` or ``"Z"``)."""
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    if axis == "X":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "Y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    elif axis == "Z":
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    else:
        raise ValueError(f"unknown rotation axis {axis!r}")
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def forward_kinematics(bvh: Bvh, frames: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World positions and orientations of every joint.

    Args:
        bvh: the parsed file.
        frames: optional slice of frames to evaluate (all frames by default).

    Returns:
        ``(positions [F, J, 3] in metres, rotations [F, J, 3, 3])``: world frame of the file (+Y up);
        ``rotations[f, j]`` maps joint j's local axes to world axes (its columns are the local x, y, z axes).
    """
    motion = bvh.motion if frames is None else bvh.motion[frames]
    num_frames, num_joints = motion.shape[0], len(bvh.names)
    pos = np.zeros((num_frames, num_joints, 3))
    rot = np.zeros((num_frames, num_joints, 3, 3))
    col = 0
    for j in range(num_joints):
        translation = np.broadcast_to(bvh.offsets[j], (num_frames, 3)).copy()
        local = np.broadcast_to(np.eye(3), (num_frames, 3, 3)).copy()
        for name in bvh.channels[j]:
            values = motion[:, col]
            col += 1
            if name.endswith("position"):
                translation[:, "XYZ".index(name[0])] = values
            elif name.endswith("rotation"):
                local = local @ _axis_rotation(name[0], values)
            else:
                raise ValueError(f"unknown BVH channel {name!r}")
        p = bvh.parents[j]
        if p < 0:
            pos[:, j] = translation
            rot[:, j] = local
        else:
            pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], translation)
            rot[:, j] = rot[:, p] @ local
    return pos * CM, rot


# ---------------------------------------------------------------------------------------------------------
# Mapping table: Bandai BVH -> COCO-17 and Human3.6M-17 3D joints.
#
# Joints that exist in the BVH are taken as they are:
#   hips      <- UpperLeg_L / UpperLeg_R (the hip joint centres)
#   knees     <- LowerLeg_*        ankles <- Foot_*
#   shoulders <- UpperArm_*        elbows <- LowerArm_*        wrists <- Hand_*
# Face points and the head top do not exist in the BVH. They are placed from the Head joint (which sits at
# the top of the neck, about at the base of the skull) with fixed offsets along the head's own axes, in metres:
# ``up`` = the head bone direction (Head's local +x), ``forward`` = the way the face looks,
# ``left`` = the actor's left. The offsets fit an adult head (about 23 cm from chin to crown).
# Human3.6M joints built from the rest:
#   pelvis    = midpoint of the hips (the same rule the 2D side uses: services.common.skeletons)
#   spine     = Chest joint            thorax = Neck joint (the neck base)
#   neck_nose = the nose point         head_top = the head-top point below
# ---------------------------------------------------------------------------------------------------------

#: Head-relative points: name -> (up, forward, left) offset in metres from the Head joint.
HEAD_POINTS: dict[str, tuple[float, float, float]] = {
    "nose": (0.045, 0.105, 0.0),
    "left_eye": (0.085, 0.085, 0.032),
    "right_eye": (0.085, 0.085, -0.032),
    "left_ear": (0.065, 0.0, 0.075),
    "right_ear": (0.065, 0.0, -0.075),
    "head_top": (0.185, 0.01, 0.0),
}

#: Local axes of the Bandai ``Head`` joint, as (axis index, sign) for up, forward and left; checked on the
#: data by ``tests/training/test_mocap.py`` (face points land in front of the body, left ear on the left).
HEAD_AXES = {"up": (0, 1.0), "forward": (1, 1.0), "left": (2, 1.0)}

_BODY = {
    "left_shoulder": "UpperArm_L", "right_shoulder": "UpperArm_R",
    "left_elbow": "LowerArm_L", "right_elbow": "LowerArm_R",
    "left_wrist": "Hand_L", "right_wrist": "Hand_R",
    "left_hip": "UpperLeg_L", "right_hip": "UpperLeg_R",
    "left_knee": "LowerLeg_L", "right_knee": "LowerLeg_R",
    "left_ankle": "Foot_L", "right_ankle": "Foot_R",
}


def head_points(names: list[str], positions: np.ndarray, rotations: np.ndarray) -> dict[str, np.ndarray]:
    """Place the :data:`HEAD_POINTS` for every frame: name -> ``[F, 3]`` metres."""
    h = names.index("Head")
    origin, frame = positions[:, h], rotations[:, h]
    axes = [sign * frame[:, :, idx] for idx, sign in (HEAD_AXES["up"], HEAD_AXES["forward"], HEAD_AXES["left"])]
    return {name: origin + sum(o * a for o, a in zip(offset, axes)) for name, offset in HEAD_POINTS.items()}


def bvh_to_coco17(names: list[str], positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """COCO-17 3D joints ``[F, 17, 3]`` (metres, world frame) from FK output of a Bandai BVH."""
    from services.common.skeletons import COCO17

    head = head_points(names, positions, rotations)
    out = np.zeros(positions.shape[:1] + (17, 3))
    for i, joint in enumerate(COCO17.joints):
        out[:, i] = head[joint] if joint in head else positions[:, names.index(_BODY[joint])]
    return out


def bvh_to_h36m17(names: list[str], positions: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Human3.6M-17 3D joints ``[F, 17, 3]`` (metres, world frame) from FK output of a Bandai BVH."""
    from services.common.skeletons import H36M17

    head = head_points(names, positions, rotations)
    get = {**{k: positions[:, names.index(v)] for k, v in _BODY.items()}, **head}
    get["pelvis"] = (get["left_hip"] + get["right_hip"]) / 2
    get["spine"] = positions[:, names.index("Chest")]
    get["thorax"] = positions[:, names.index("Neck")]
    get["neck_nose"] = head["nose"]
    return np.stack([get[j] for j in H36M17.joints], axis=1)


def take_joints(path: str | Path) -> dict[str, np.ndarray]:
    """Load one take and return ``{"coco17": [F,17,3], "h36m17": [F,17,3], "fps": float}`` in metres, +Y up."""
    bvh = load_bvh(path)
    pos, rot = forward_kinematics(bvh)
    return {
        "coco17": bvh_to_coco17(bvh.names, pos, rot).astype(np.float32),
        "h36m17": bvh_to_h36m17(bvh.names, pos, rot).astype(np.float32),
        "fps": np.float32(1.0 / bvh.frame_time),
    }
