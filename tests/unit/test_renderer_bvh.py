"""BVH export: written by services.renderer.bvh, read back with an independent reader (bvhio, PyPI), forward
kinematics within 1 cm of the world joints on synthetic and on real lifted motion; optionally imported by
Blender."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import bvhio
import numpy as np
import pytest

from services.common.skeletons import H36M17, H36M17_PARENTS, blazepose33_to_coco17
from services.renderer.bvh import (bvh_for_track, bvh_text, euler_zxy_deg, forward_kinematics, rotation_zxy,
                                   solve_motion)

DATA = Path(__file__).resolve().parent.parent / "data"
TOLERANCE_M = 0.01


def read_back(path: Path) -> tuple[np.ndarray, float]:
    """World joint positions [F, 17, 3] and frame time as bvhio reads the file."""
    container = bvhio.readAsBvh(str(path))
    root = bvhio.readAsHierarchy(str(path))
    joints = {joint.Name: joint for joint, _, _ in root.layout()}
    out = np.zeros((container.FrameCount, 17, 3))
    for frame in range(container.FrameCount):
        root.loadPose(frame, recursive=True)
        out[frame] = [list(joints[name].PositionWorld) for name in H36M17.joints]
    return out, container.FrameTime


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def synthetic_motion(frames=90, seed=0) -> np.ndarray:
    """A person turning, walking forwards and bending limbs, with hips and shoulders that move against the
    pelvis and thorax (as a lifter's output does), [F, 17, 3] metres, y up."""
    rng = np.random.default_rng(seed)
    rest = np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .52, 0], [-.12, .08, 0], [.12, .95, 0], [.12, .52, 0],
                     [.12, .08, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .06], [0, 1.72, 0], [.18, 1.42, 0],
                     [.18, 1.12, 0], [.18, .85, 0], [-.18, 1.42, 0], [-.18, 1.12, 0], [-.18, .85, 0]])
    out = np.zeros((frames, 17, 3))
    for f in range(frames):
        t = f / 30
        bones = {c: rest[c] - rest[p] for c, p in enumerate(H36M17_PARENTS) if p >= 0}
        for c in bones:  # every bone swings on its own
            bones[c] = rotation(rng.normal(size=3), 0.6 * np.sin(2 * t + c)) @ bones[c]
        bones[11] = bones[11] * (1 + 0.1 * np.sin(3 * t))  # a shoulder that is not rigid with the thorax
        pose = np.zeros((17, 3))
        for c, p in enumerate(H36M17_PARENTS):
            if p >= 0:
                pose[c] = pose[p] + bones[c]
        body = rotation([0, 1, 0], 1.5 * t) @ rotation([1, 0, 0], 0.3 * np.sin(t))
        out[f] = pose @ body.T + [0.8 * t, 0.95 + 0.05 * np.sin(4 * t), 2 + 0.2 * t]
    return out


def lifted_fixture_track() -> np.ndarray:
    """A real lifted track: MediaPipe's 2D of tests/data/two_people_office_24f.mp4 through the shipped lifter,
    given a root path across the floor (the lifter's output is pelvis-centred)."""
    from services.lifter3d.lift import lift_sequence, load_lifter
    doc = json.loads((DATA / "mediapipe_pose_24f.json").read_text())
    landmarks = np.array(doc["frames"], np.float32)[..., :3]
    lifted = lift_sequence(blazepose33_to_coco17(landmarks), 640, 360, load_lifter())
    return lifted.grounded.astype(np.float64) + np.linspace([0, 0, 0], [1.0, 0, -0.5], len(landmarks))[:, None]


@pytest.mark.parametrize("source", ["synthetic", "lifted"])
def test_bvh_read_back_puts_every_joint_on_the_world_joints(tmp_path, source):
    world = synthetic_motion() if source == "synthetic" else lifted_fixture_track()
    path = tmp_path / "person_0.bvh"
    path.write_bytes(bvh_for_track(world.astype(np.float32), fps=25.0))
    positions, frame_time = read_back(path)
    assert positions.shape == world.shape
    error = np.linalg.norm(positions - world, axis=-1)
    assert error.max() < TOLERANCE_M, f"largest joint error {error.max() * 100:.2f} cm"
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


BLENDER_SCRIPT = textwrap.dedent("""
    import builtins, json, sys
    _open = builtins.open
    # Blender 3.4's importer opens with mode 'rU', which Python 3.11 refuses
    builtins.open = lambda f, mode='r', *a, **k: _open(f, mode.replace('U', ''), *a, **k)
    import bpy
    path, out = sys.argv[sys.argv.index('--') + 1:]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_anim.bvh(filepath=path, update_scene_fps=True, update_scene_duration=True)
    arm = [o for o in bpy.context.scene.objects if o.type == 'ARMATURE'][0]
    first, last = (int(v) for v in arm.animation_data.action.frame_range)
    frames = []
    for f in range(first, last + 1):
        bpy.context.scene.frame_set(f)
        frames.append({b.name: list(arm.matrix_world @ b.head) for b in arm.pose.bones})
    _open(out, 'w').write(json.dumps({'fps': bpy.context.scene.render.fps, 'frames': frames}))
""")


@pytest.mark.skipif(shutil.which("blender") is None, reason="blender is not installed (apt-get install blender)")
def test_blender_imports_the_bvh_with_bones_on_the_world_joints(tmp_path):
    world = lifted_fixture_track()
    bvh, script, out = tmp_path / "person_0.bvh", tmp_path / "check.py", tmp_path / "out.json"
    bvh.write_bytes(bvh_for_track(world, fps=30.0))
    script.write_text(BLENDER_SCRIPT)
    subprocess.run(["blender", "--background", "--factory-startup", "--python", str(script), "--", str(bvh),
                    str(out)], check=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    heads = np.array([[frame[name] for name in H36M17.joints] for frame in result["frames"]])
    expected = np.stack([world[..., 0], -world[..., 2], world[..., 1]], axis=-1)  # Blender: z up, y = -z of BVH
    assert heads.shape == expected.shape and result["fps"] == 30
    assert np.linalg.norm(heads - expected, axis=-1).max() < TOLERANCE_M


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
