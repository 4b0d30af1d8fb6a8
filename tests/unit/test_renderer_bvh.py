"""BVH export: written by services.renderer.bvh, read back with an independent reader (bvhio, PyPI) and, when
it is installed, imported by Blender: forward kinematics puts every joint on the world joints, on synthetic
and on real lifted motion, within the 0.002 mm that services/renderer/README.md reports from
bench/bvh_accuracy.py."""
import shutil
import sys

import bvhio
import numpy as np
import pytest

from bench.bvh_accuracy import (blender_bone_heads, bvhio_world_joints, largest_error_mm, lifted_fixture_track,
                                rotation, synthetic_motion)
from services.common.skeletons import H36M17, H36M17_PARENTS
from services.renderer.bvh import (bvh_for_track, bvh_text, euler_zxy_deg, forward_kinematics, rotation_zxy,
                                   solve_motion)

TOLERANCE_MM = 0.002   # the largest joint error services/renderer/README.md reports (bench/bvh_accuracy.py)


@pytest.mark.parametrize("source", ["synthetic", "lifted"])
def test_bvh_read_back_puts_every_joint_on_the_world_joints(tmp_path, source):
    world = synthetic_motion() if source == "synthetic" else lifted_fixture_track()
    path = tmp_path / "person_0.bvh"
    path.write_bytes(bvh_for_track(world.astype(np.float32), fps=25.0))
    positions, frame_time = bvhio_world_joints(path)
    assert positions.shape == world.shape
    error = largest_error_mm(positions, world)
    assert error < TOLERANCE_MM, f"largest joint error {error:.4f} mm"
    assert frame_time == pytest.approx(1 / 25.0)


def test_bvh_hierarchy_is_the_17_joints_with_end_sites_only_beyond_leaves(tmp_path):
    path = tmp_path / "p.bvh"
    path.write_text(bvh_text(solve_motion(synthetic_motion(10), fps=30)))
    root = bvhio.readAsBvh(str(path)).Root
    seen, leaves = {}, []

    def walk(node, parent):
        seen[node.Name] = parent
        if not node.Children:
            leaves.append(node.Name)
        for child in node.Children:
            walk(child, node.Name)

    walk(root, None)
    assert list(seen) != [] and set(seen) == set(H36M17.joints)
    for name, parent in seen.items():
        p = H36M17_PARENTS[H36M17.index(name)]
        assert parent == (H36M17.joints[p] if p >= 0 else None)
    assert sorted(leaves) == sorted(["right_ankle", "left_ankle", "head_top", "left_wrist", "right_wrist"])
    text = path.read_text()
    assert text.count("JOINT ") == 16 and text.count("ROOT pelvis") == 1 and text.count("End Site") == 5


def test_offsets_are_median_bone_lengths_and_rigid_motion_needs_rotations_only():
    world = synthetic_motion(40)
    rigid = np.repeat(world[:1], 40, axis=0)
    spin = np.stack([rotation([0, 1, 0], 0.1 * f) for f in range(40)])
    rigid = np.einsum("fij,fkj->fki", spin, rigid - rigid[:, :1]) + rigid[:, :1] + np.linspace(0, 1, 40)[:, None, None]
    motion = solve_motion(rigid, fps=30)
    assert motion.positions == {}  # every joint placed by rotations alone
    for child, parent in enumerate(H36M17_PARENTS):
        if parent >= 0:
            assert np.linalg.norm(motion.offsets[child]) == pytest.approx(
                np.linalg.norm(rigid[0, child] - rigid[0, parent]), abs=1e-9)
    assert np.abs(forward_kinematics(motion) - rigid).max() < 1e-6


def test_knees_and_elbows_bend_about_one_local_axis():
    world = synthetic_motion()
    motion = solve_motion(world, fps=30)
    angles = euler_zxy_deg(motion.local_rotations)  # [F, 17, (z, x, y)]
    limbs = {"left_knee": ("left_hip", "left_ankle", [0, 2]), "right_knee": ("right_hip", "right_ankle", [0, 2]),
             "left_elbow": ("left_shoulder", "left_wrist", [0, 1]),
             "right_elbow": ("right_shoulder", "right_wrist", [0, 1])}
    for joint, (upper, lower, off_axis) in limbs.items():
        j, u, w = H36M17.index(joint), H36M17.index(upper), H36M17.index(lower)
        a, b = world[:, j] - world[:, u], world[:, w] - world[:, j]
        bend = np.degrees(np.arccos(np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)))
        hinge = bend > 15  # where the bend defines the hinge: flexion about one local axis only
        assert hinge.sum() > 10, joint
        assert np.abs(angles[hinge][:, j, off_axis]).max() < 1e-6, joint
        assert np.abs(angles[~hinge][:, j, off_axis]).max(initial=0) < 15, joint  # nearly straight: small


def test_euler_zxy_round_trip_including_gimbal_lock():
    rng = np.random.default_rng(3)
    angles = rng.uniform(-170, 170, size=(200, 3))
    angles[:, 1] = rng.uniform(-89, 89, size=200)
    angles[:5, 1] = 90.0
    r = rotation_zxy(angles)
    assert np.abs(rotation_zxy(euler_zxy_deg(r)) - r).max() < 1e-9


def test_still_image_is_one_frame_and_bad_input_is_refused():
    one = synthetic_motion(1)
    text = bvh_text(solve_motion(one, fps=0))
    assert "Frames: 1\n" in text
    with pytest.raises(ValueError, match="17, 3"):
        solve_motion(np.zeros((5, 16, 3)), fps=30)
    broken = synthetic_motion(3)
    broken[1, 4, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        solve_motion(broken, fps=30)


@pytest.mark.skipif(shutil.which("blender") is None, reason="blender is not installed (apt-get install blender)")
def test_blender_imports_the_bvh_with_bones_on_the_world_joints(tmp_path):
    world = lifted_fixture_track()
    bvh = tmp_path / "person_0.bvh"
    bvh.write_bytes(bvh_for_track(world.astype(np.float32), fps=30.0))
    heads, fps = blender_bone_heads(bvh, tmp_path)
    assert heads.shape == world.shape and fps == 30
    error = largest_error_mm(heads, world)
    assert error < TOLERANCE_MM, f"largest joint error {error:.4f} mm"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
