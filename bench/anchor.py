"""The MediaPipe anchor as the project's benchmarks call it: ``bench/mediapipe_anchor.py`` run in its own
virtual environment (``make mediapipe-venv`` makes ``.venv-mediapipe``) on the same clip and frames."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANCHOR_PYTHON = ROOT / ".venv-mediapipe" / "bin" / "python"


def mediapipe_frames_per_s(video: str | Path, size: tuple[int, int] | None = None, frames: int = 0,
                           repeat: int = 3) -> dict | None:
    """The anchor's JSON result (``frames_per_s`` and the frames it ran on), or None, with a line printed
    saying why, when the anchor's environment is missing."""
    if not ANCHOR_PYTHON.exists():
        print(f"MediaPipe anchor skipped: {ANCHOR_PYTHON} is missing; run `make mediapipe-venv`")
        return None
    command = [str(ANCHOR_PYTHON), str(ROOT / "bench" / "mediapipe_anchor.py"), str(video), "--json",
               "--frames", str(frames), "--repeat", str(repeat)]
    if size:
        command += ["--size", f"{size[0]}x{size[1]}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_ratio(label: str, ours: float, anchor: dict | None) -> None:
    if anchor:
        print(f"  {label}: {ours:.1f} frames/s = {ours / anchor['frames_per_s']:.2f}x MediaPipe Pose's "
              f"{anchor['frames_per_s']:.1f} frames/s on the same {anchor['frames']} frames "
              f"({anchor['width']}x{anchor['height']})")
