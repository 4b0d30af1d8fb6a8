"""BVH export of one person's world-frame motion: a Human3.6M-17 skeleton whose forward kinematics puts
every joint on the given positions.

File layout (what :func:`bvh_text` writes):

* units: **metres** (Blender's importer at its default scale 1.0 gives true size); axes as the world frame:
  x right, y up (floor at y = 0), z towards the video camera; a person in the rest pose faces +z with their
  left side at +x;
* hierarchy: the 17 Human3.6M joints, each a ``JOINT`` (root ``pelvis``), parents from
  ``services.common.skeletons.H36M17_PARENTS``; ``End Site`` only beyond the leaves (ankles: 0.3 x shin
  length forwards; wrists and head top: 0.3 x the last bone's length along it);
* offsets: each bone has the person's median length over the sequence. Single-child chains point straight
  down (legs), up (spine, head) or sideways (arms, a T-pose); the pelvis's and the thorax's children keep
  their median layout (hips, shoulders, spine and neck as this person holds them);
* channels: the root has ``Xposition Yposition Zposition Zrotation Xrotation Yrotation`` (pelvis position
  and orientation); every other joint ``Zrotation Xrotation Yrotation`` in degrees (rotation matrix
  ``Rz @ Rx @ Ry``, applied to the joint's children). A joint whose parent's rotation cannot put it within
  :data:`POSITION_TOLERANCE_M` of its target (the body is not rigid there: the lifter's hips and shoulders
  move against the pelvis and thorax, a bone whose length varies) also gets ``Xposition Yposition
  Zposition`` channels first, holding its offset from the parent in the parent's frame for every frame
  (the value replaces ``OFFSET``, as Blender's and other readers treat position channels);
* frame time: ``1 / fps`` of the video (a still image: one frame).

Rotations are solved per frame from the positions (:func:`solve_motion`): the pelvis and the thorax by
two-vector alignment (the spine / neck direction exactly, then the left-right line of the hips / shoulders
for the twist about it); every other joint with one child by the smallest rotation (swing) from its
parent's orientation that points its bone at the child, so each bone's twist follows its parent's and
stays stable over time; the thighs and upper arms then turn about their own axis so that the knee or elbow
below bends about one local axis (a hinge: knee flexion is a pure local x rotation, elbow flexion a pure local
y rotation), the twist interpolated in time where the limb is almost straight; leaves keep their parent's
orientation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.common.skeletons import H36M17, H36M17_PARENTS

POSITION_TOLERANCE_M = 0.0005  #: largest rotation-only placement error before a joint gets position channels
ROTATION_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")

_J = H36M17.index
_PELVIS, _SPINE, _THORAX, _NECK = _J("pelvis"), _J("spine"), _J("thorax"), _J("neck_nose")
_CHILDREN: dict[int, list[int]] = {j: [c for c, p in enumerate(H36M17_PARENTS) if p == j]
                                   for j in range(H36M17.num_joints)}
# joints with several children: (joint, the child the main axis points at, left child, right child)
_BRANCHES = {_PELVIS: (_SPINE, _J("left_hip"), _J("right_hip")),
             _THORAX: (_NECK, _J("left_shoulder"), _J("right_shoulder"))}
# rest direction of the bone that ends at each child of a single-child joint (T-pose, facing +z, left at +x)
_REST_DIRECTION = {
    _J("right_knee"): (0, -1, 0), _J("right_ankle"): (0, -1, 0),
    _J("left_knee"): (0, -1, 0), _J("left_ankle"): (0, -1, 0),
    _THORAX: (0, 1, 0), _J("head_top"): (0, 1, 0),
    _J("left_elbow"): (1, 0, 0), _J("left_wrist"): (1, 0, 0),
    _J("right_elbow"): (-1, 0, 0), _J("right_wrist"): (-1, 0, 0),
}
# upper-limb joints whose twist follows the hinge below them: rest hinge axis (joint frame) = rest bone x the
# direction the lower limb bends in (knees backwards, -z; elbows forwards, +z, palms facing forwards)
_HINGES = {
    _J("right_hip"): np.cross(_REST_DIRECTION[_J("right_knee")], (0, 0, -1)).astype(float),
    _J("left_hip"): np.cross(_REST_DIRECTION[_J("left_knee")], (0, 0, -1)).astype(float),
    _J("left_shoulder"): np.cross(_REST_DIRECTION[_J("left_elbow")], (0, 0, 1)).astype(float),
    _J("right_shoulder"): np.cross(_REST_DIRECTION[_J("right_elbow")], (0, 0, 1)).astype(float),
}
HINGE_MIN_BEND_DEG = 15.0  #: below this knee / elbow bend the hinge axis is too unsteady to set the twist
_FOOT_FRACTION = 0.3   # ankle End Site: this fraction of the shin length, forwards (+z)
_TIP_FRACTION = 0.3    # wrist / head-top End Site: this fraction of the last bone's length, along it


@dataclass(frozen=True)
class BvhMotion:
    """A solved BVH: rest skeleton plus per-frame channels.

    ``offsets`` [17, 3] metres, each joint's rest offset from its parent (the root's is zero);
    ``end_sites`` {leaf joint: [3] offset}; ``root_positions`` [F, 3] metres; ``local_rotations``
    [F, 17, 3, 3] (joint frame -> parent frame; the root's -> world); ``positions`` {joint: [F, 3]} the
    per-frame offsets of the joints that carry position channels; ``frame_time_s`` seconds per frame.
    """

    offsets: np.ndarray
    end_sites: dict[int, np.ndarray]
    root_positions: np.ndarray
    local_rotations: np.ndarray
    positions: dict[int, np.ndarray]
    frame_time_s: float

    @property
    def frame_count(self) -> int:
        return int(self.root_positions.shape[0])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _branch_frames(world: np.ndarray, joint: int) -> np.ndarray:
    """Per-frame orthonormal frames [F, 3, 3] (columns x, y, z) of a branching joint: y along the main
    child, x along left-minus-right made perpendicular to y, z = x cross y. A frame whose vectors are
    degenerate (coincident joints) takes the previous frame's (the first good one for leading frames)."""
    main, left, right = _BRANCHES[joint]
    y = world[:, main] - world[:, joint]
    side = world[:, left] - world[:, right]
    x = side - y * (np.sum(side * y, axis=-1, keepdims=True) / np.maximum(np.sum(y * y, -1, keepdims=True), 1e-12))
    ok = (np.linalg.norm(y, axis=-1) > 1e-6) & (np.linalg.norm(x, axis=-1) > 1e-6)
    y, x = _unit(y), _unit(x)
    frames = np.stack([x, y, np.cross(x, y)], axis=-1)
    if not ok.any():
        return np.broadcast_to(np.eye(3), frames.shape).copy()
    last = frames[np.argmax(ok)]
    for f in range(len(frames)):
        if ok[f]:
            last = frames[f]
        else:
            frames[f] = last
    return frames


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations [F, 3, 3] turning directions ``a`` [F, 3] onto ``b`` [F, 3] (Rodrigues). Opposite
    directions turn by 180 degrees about an axis perpendicular to ``a``."""
    a, b = _unit(a), _unit(b)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1)
    c = np.sum(a * b, axis=-1)
    flip = (s < 1e-9) & (c < 0)
    if flip.any():  # any axis perpendicular to a
        helper = np.where(np.abs(a[flip, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
        axis[flip] = np.cross(a[flip], helper)
        s[flip] = 0.0
    return _axis_angle(_unit(axis), np.arctan2(s, c))


def _axis_angle(k: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations [F, 3, 3] by ``angle`` [F] radians about unit axes ``k`` [F, 3] (right-handed)."""
    kx = np.zeros(k.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx = kx - np.swapaxes(kx, -1, -2)
    sin, cos = np.sin(angle)[..., None, None], np.cos(angle)[..., None, None]
    return np.eye(3) + sin * kx + (1 - cos) * (kx @ kx)


def _hinge_twist(swung: np.ndarray, bone: np.ndarray, next_bone: np.ndarray, rest_axis: np.ndarray) -> np.ndarray:
    """Turn the frames ``swung`` [F, 3, 3] of an upper limb (thigh, upper arm) about their bone ``bone`` [F, 3]
    so that the rest hinge axis ``rest_axis`` (joint frame) lies along the knee's / elbow's current hinge,
    ``bone x next_bone``: the lower limb then bends about one local axis. Where the limb is within
    :data:`HINGE_MIN_BEND_DEG` of straight the hinge is undefined; the twist is interpolated in time there
    from the frames around (held at the ends; none at all when the limb is never bent)."""
    d = _unit(bone)
    hinge = np.cross(d, _unit(next_bone))
    defined = np.linalg.norm(hinge, axis=-1) > np.sin(np.radians(HINGE_MIN_BEND_DEG))
    if not defined.any():
        return swung
    current = swung @ rest_axis
    hinge = _unit(hinge)
    theta = np.arctan2(np.sum(d * np.cross(current, hinge), axis=-1), np.sum(current * hinge, axis=-1))
    known = np.flatnonzero(defined)
    theta = np.interp(np.arange(len(d)), known, np.unwrap(theta[known]))
    return _axis_angle(d, theta) @ swung


def rest_offsets(world: np.ndarray) -> np.ndarray:
    """Rest offsets [17, 3] (metres) of the person moving as ``world`` [F, 17, 3]: median bone lengths;
    branching joints' children at their median place in the branch frame (see :func:`_branch_frames`)."""
    offsets = np.zeros((17, 3))
    lengths = {c: float(np.median(np.linalg.norm(world[:, c] - world[:, p], axis=-1)))
               for c, p in enumerate(H36M17_PARENTS) if p >= 0}
    for joint, (main, _, _) in _BRANCHES.items():
        frames = _branch_frames(world, joint)
        for child in _CHILDREN[joint]:
            local = np.einsum("fji,fj->fi", frames, world[:, child] - world[:, joint])
            offsets[child] = _unit(np.median(local, axis=0)) * lengths[child]
        offsets[main] = (0.0, lengths[main], 0.0)
    for child, direction in _REST_DIRECTION.items():
        offsets[child] = np.asarray(direction, float) * lengths[child]
    return offsets


def _end_sites(offsets: np.ndarray) -> dict[int, np.ndarray]:
    sites = {}
    for leaf in (j for j in range(17) if not _CHILDREN[j]):
        if leaf in (_J("left_ankle"), _J("right_ankle")):
            sites[leaf] = np.array([0.0, 0.0, _FOOT_FRACTION * np.linalg.norm(offsets[leaf])])
        else:
            sites[leaf] = _TIP_FRACTION * offsets[leaf]
    return sites


def solve_motion(world: np.ndarray, fps: float) -> BvhMotion:
    """Solve a BVH for one person's world joints ``world`` [F, 17, 3] (metres, y up, Human3.6M-17 order).

    ``fps`` > 0 gives the frame time; 0 (a still image) gives one frame's time of 1/30 s, which readers
    need but a single frame never uses. Raises ``ValueError`` for a wrong shape, no frames or a
    non-finite coordinate.
    """
    world = np.asarray(world, np.float64)
    if world.ndim != 3 or world.shape[1:] != (17, 3) or len(world) == 0:
        raise ValueError(f"world joints must be [F>0, 17, 3], got {list(world.shape)}")
    if not np.isfinite(world).all():
        raise ValueError("world joints hold NaN or infinite values; fill gaps before writing a BVH")
    offsets = rest_offsets(world)
    count = len(world)
    glob = np.zeros((count, 17, 3, 3))
    for joint, parent in enumerate(H36M17_PARENTS):
        children = _CHILDREN[joint]
        if joint in _BRANCHES:
            glob[:, joint] = _branch_frames(world, joint)
        elif len(children) == 1:
            child = children[0]
            current = world[:, child] - world[:, joint]
            glob[:, joint] = _swing(glob[:, parent] @ offsets[child], current) @ glob[:, parent]
            if joint in _HINGES:
                grandchild = _CHILDREN[child][0]
                glob[:, joint] = _hinge_twist(glob[:, joint], current, world[:, grandchild] - world[:, child],
                                              _HINGES[joint])
        else:
            glob[:, joint] = glob[:, parent]
    local = glob.copy()
    for joint, parent in enumerate(H36M17_PARENTS):
        if parent >= 0:
            local[:, joint] = np.swapaxes(glob[:, parent], -1, -2) @ glob[:, joint]
    positions = {}
    for joint, parent in enumerate(H36M17_PARENTS):
        if parent < 0:
            continue
        target = np.einsum("fji,fj->fi", glob[:, parent], world[:, joint] - world[:, parent])
        if np.abs(target - offsets[joint]).max() > POSITION_TOLERANCE_M:
            positions[joint] = target
    frame_time = 1.0 / fps if fps > 0 else 1.0 / 30.0
    return BvhMotion(offsets, _end_sites(offsets), world[:, _PELVIS].copy(), local, positions, frame_time)


def forward_kinematics(motion: BvhMotion) -> np.ndarray:
    """World joint positions [F, 17, 3] the BVH's channels give (the check of :func:`solve_motion`)."""
    count = motion.frame_count
    out = np.zeros((count, 17, 3))
    glob = np.zeros((count, 17, 3, 3))
    for joint, parent in enumerate(H36M17_PARENTS):
        if parent < 0:
            out[:, joint] = motion.root_positions
            glob[:, joint] = motion.local_rotations[:, joint]
            continue
        offset = motion.positions.get(joint, motion.offsets[joint])
        out[:, joint] = out[:, parent] + np.einsum("fij,fj->fi", glob[:, parent],
                                                   np.broadcast_to(offset, (count, 3)))
        glob[:, joint] = glob[:, parent] @ motion.local_rotations[:, joint]
    return out


def euler_zxy_deg(rotations: np.ndarray) -> np.ndarray:
    """Angles [..., 3] (z, x, y degrees) with ``R = Rz(z) @ Rx(x) @ Ry(y)`` for rotations [..., 3, 3]."""
    r = np.asarray(rotations, np.float64)
    x = np.arcsin(np.clip(r[..., 2, 1], -1.0, 1.0))
    z = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    y = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    gimbal = np.abs(r[..., 2, 1]) > 1 - 1e-9  # x = +-90 deg: only z + y (or z - y) is defined
    if np.any(gimbal):
        z = np.where(gimbal, np.arctan2(r[..., 1, 0], r[..., 0, 0]), z)
        y = np.where(gimbal, 0.0, y)
    return np.degrees(np.stack([z, x, y], axis=-1))


def rotation_zxy(angles_deg: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_zxy_deg`: rotations [..., 3, 3] from (z, x, y) degrees [..., 3]."""
    z, x, y = np.moveaxis(np.radians(np.asarray(angles_deg, np.float64)), -1, 0)
    one, zero = np.ones_like(z), np.zeros_like(z)

    def m(rows):
        return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)

    rz = m([[np.cos(z), -np.sin(z), zero], [np.sin(z), np.cos(z), zero], [zero, zero, one]])
    rx = m([[one, zero, zero], [zero, np.cos(x), -np.sin(x)], [zero, np.sin(x), np.cos(x)]])
    ry = m([[np.cos(y), zero, np.sin(y)], [zero, one, zero], [-np.sin(y), zero, np.cos(y)]])
    return rz @ rx @ ry


def bvh_text(motion: BvhMotion) -> str:
    """The BVH file (see the module docstring for units, axes and channels)."""
    lines = ["HIERARCHY"]
    order: list[int] = []

    def joint_block(joint: int, depth: int) -> None:
        pad = "  " * depth
        keyword = "ROOT" if H36M17_PARENTS[joint] < 0 else "JOINT"
        lines.append(f"{pad}{keyword} {H36M17.joints[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {_xyz(motion.offsets[joint])}")
        channels = ROTATION_CHANNELS
        if H36M17_PARENTS[joint] < 0 or joint in motion.positions:
            channels = POSITION_CHANNELS + ROTATION_CHANNELS
        lines.append(f"{pad}  CHANNELS {len(channels)} {' '.join(channels)}")
        order.append(joint)
        for child in _CHILDREN[joint]:
            joint_block(child, depth + 1)
        if joint in motion.end_sites:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_xyz(motion.end_sites[joint])}",
                          f"{pad}  }}"])
        lines.append(f"{pad}}}")

    joint_block(_PELVIS, 0)
    angles = euler_zxy_deg(motion.local_rotations)            # [F, 17, 3]
    angles = np.degrees(np.unwrap(np.radians(angles), axis=0))  # no 360-degree jumps between frames
    lines += ["MOTION", f"Frames: {motion.frame_count}", f"Frame Time: {motion.frame_time_s:.8f}"]
    for f in range(motion.frame_count):
        values = []
        for joint in order:
            if H36M17_PARENTS[joint] < 0:
                values.append(_xyz(motion.root_positions[f]))
            elif joint in motion.positions:
                values.append(_xyz(motion.positions[joint][f]))
            values.append(" ".join(f"{a:.5f}" for a in angles[f, joint]))
        lines.append(" ".join(values))
    return "\n".join(lines) + "\n"


def _xyz(v) -> str:
    return " ".join(f"{float(c):.6f}" for c in v)


def bvh_for_track(world: np.ndarray, fps: float) -> bytes:
    """``person_<track>.bvh`` content for one track's world joints [F, 17, 3] (see :func:`solve_motion`)."""
    return bvh_text(solve_motion(world, fps)).encode()
