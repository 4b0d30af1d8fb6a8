"""How far the exported BVH puts each joint from the world joints it was solved from, read back by two
readers that share no code with the writer: the ``bvhio`` package and Blender's importer.

    .venv/bin/python bench/bvh_accuracy.py

Prints the largest joint error, in mm, of two tracks: a synthetic person turning, walking and bending
every limb, with hips and shoulders that move against the pelvis and thorax (as a lifter's output
does), and a real lifted track (MediaPipe's 2D of tests/data/two_people_office_24f.mp4 through the
shipped lifter, with a root path across the floor added). Blender is run when ``blender`` is on the
PATH (Debian's 3.4). ``tests/unit/test_renderer_bvh.py`` holds these errors under the figures that
services/renderer/README.md reports from this script.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "proto")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from services.common.skeletons import H36M17, H36M17_PARENTS, blazepose33_to_coco17  # noqa: E402
from services.renderer.bvh import bvh_for_track  # noqa: E402

DATA = ROOT / "tests" / "data"


def rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def synthetic_motion(frames: int = 90, seed: int = 0) -> np.ndarray:
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


def bvhio_world_joints(path: Path) -> tuple[np.ndarray, float]:
    """World joint positions [F, 17, 3] and frame time as bvhio reads the file."""
    import bvhio
    container = bvhio.readAsBvh(str(path))
    root = bvhio.readAsHierarchy(str(path))
    joints = {joint.Name: joint for joint, _, _ in root.layout()}
    out = np.zeros((container.FrameCount, 17, 3))
    for frame in range(container.FrameCount):
        root.loadPose(frame, recursive=True)
        out[frame] = [list(joints[name].PositionWorld) for name in H36M17.joints]
    return out, container.FrameTime


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


def blender_bone_heads(bvh: Path, workdir: Path) -> tuple[np.ndarray, int]:
    """The bone heads [F, 17, 3] after Blender's importer read ``bvh``, back in the file's frame (y up),
    and the scene's frame rate."""
    script, out = workdir / "blender_check.py", workdir / "blender_out.json"
    script.write_text(BLENDER_SCRIPT)
    subprocess.run(["blender", "--background", "--factory-startup", "--python", str(script), "--", str(bvh),
                    str(out)], check=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    heads = np.array([[frame[name] for name in H36M17.joints] for frame in result["frames"]])
    return np.stack([heads[..., 0], heads[..., 2], -heads[..., 1]], axis=-1), result["fps"]  # Blender is z up


def largest_error_mm(found: np.ndarray, world: np.ndarray) -> float:
    return float(np.linalg.norm(found - world, axis=-1).max() * 1000)


def main() -> int:
    tracks = {"synthetic motion (90 frames)": synthetic_motion(), "lifted track (24 frames)": lifted_fixture_track()}
    with tempfile.TemporaryDirectory() as tmp:
        for name, world in tracks.items():
            path = Path(tmp) / "person_0.bvh"
            path.write_bytes(bvh_for_track(world.astype(np.float32), fps=30.0))
            joints, _ = bvhio_world_joints(path)
            print(f"bvhio, {name}: largest joint error {largest_error_mm(joints, world):.4f} mm")
            if shutil.which("blender"):
                heads, _ = blender_bone_heads(path, Path(tmp))
                print(f"Blender import, {name}: largest joint error {largest_error_mm(heads, world):.4f} mm")
            else:
                print(f"Blender import, {name}: skipped (blender is not on the PATH)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
