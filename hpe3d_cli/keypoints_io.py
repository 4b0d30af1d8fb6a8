"""Reading 2D keypoint files for ``hpe3d lift`` (its outputs: :mod:`hpe3d_cli.lift_outputs`).

Two inputs are understood:

* our own ``poses.json`` export (``schema_version``, ``video.width/height``,
  ``frames[].persons[].keypoints_2d`` as ``[[x, y, score] * 17]``);
* GAST-Net's demo JSON (``{"label", "label_index", "data": [{"frame_index", "skeleton": [{"pose":
  [[x, y] * 17], "score": [[s] * 17], "bbox"}]}]}``): COCO-17 pixels with no frame size, so the caller
  must give it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


class KeypointFormatError(ValueError):
    """The file is not one of the understood formats, or lacks what lifting needs."""


@dataclass
class KeypointTrack:
    """One person's COCO-17 keypoints over consecutive frames; missing frames have score 0."""

    track_id: int
    first_frame: int
    keypoints: np.ndarray  # [F, 17, 3] x, y (pixels), score


@dataclass
class KeypointInput:
    source_format: str          # "hpe3d" or "gastnet"
    frame_count: int
    width: int | None
    height: int | None
    tracks: list[KeypointTrack]


def parse_size(text: str) -> tuple[int, int]:
    """``"1920x1080"`` -> ``(1920, 1080)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match or int(match.group(1)) <= 0 or int(match.group(2)) <= 0:
        raise KeypointFormatError(f"size must look like WIDTHxHEIGHT (e.g. 1920x1080), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _tracks_from_frames(per_frame: list[dict[int, np.ndarray]]) -> list[KeypointTrack]:
    """Group per-frame ``{track_id: [17, 3]}`` into tracks spanning first..last appearance."""
    ids = sorted({tid for frame in per_frame for tid in frame})
    tracks = []
    for tid in ids:
        present = [i for i, frame in enumerate(per_frame) if tid in frame]
        first, last = present[0], present[-1]
        kp = np.zeros((last - first + 1, 17, 3), dtype=np.float32)
        for i in present:
            kp[i - first] = per_frame[i][tid]
        tracks.append(KeypointTrack(track_id=tid, first_frame=first, keypoints=kp))
    return tracks


def _joints(rows, what: str) -> np.ndarray:
    arr = np.asarray(rows, dtype=np.float32)
    if arr.shape != (17, 3):
        raise KeypointFormatError(f"{what}: expected 17 COCO-17 joints of (x, y, score), got shape {list(arr.shape)}")
    return arr


def parse_hpe3d_export(doc: dict) -> KeypointInput:
    video = doc.get("video") or {}
    frames = doc.get("frames")
    if not isinstance(frames, list):
        raise KeypointFormatError("poses.json has no 'frames' list")
    per_frame = []
    for n, frame in enumerate(frames):
        persons = {}
        for person in frame.get("persons") or []:
            if person.get("keypoints_2d") is not None:
                persons[int(person.get("track_id", 0))] = _joints(person["keypoints_2d"], f"frame {n}")
        per_frame.append(persons)
    return KeypointInput("hpe3d", len(frames), video.get("width"), video.get("height"), _tracks_from_frames(per_frame))


def parse_gastnet(doc: dict) -> KeypointInput:
    data = doc.get("data")
    if not isinstance(data, list):
        raise KeypointFormatError("GAST-Net JSON has no 'data' list")
    per_frame = []
    for entry in sorted(data, key=lambda e: e.get("frame_index", 0)):
        persons = {}
        for tid, skeleton in enumerate(entry.get("skeleton") or []):
            pose = np.asarray(skeleton.get("pose"), dtype=np.float32)
            score = np.asarray(skeleton.get("score"), dtype=np.float32).reshape(-1, 1)
            if pose.shape != (17, 2) or score.shape != (17, 1):
                raise KeypointFormatError(f"frame {entry.get('frame_index')}: expected 17 (x, y) poses and 17 "
                                          f"scores, got {list(pose.shape)} and {list(score.shape)}")
            persons[tid] = np.concatenate([pose, score], axis=1)
        per_frame.append(persons)
    return KeypointInput("gastnet", len(per_frame), None, None, _tracks_from_frames(per_frame))


def read_keypoints(doc: dict, size: tuple[int, int] | None = None) -> KeypointInput:
    """Parse either format; ``size`` (width, height) overrides the file's and is required for GAST-Net."""
    if not isinstance(doc, dict):
        raise KeypointFormatError("expected a JSON object")
    if "schema_version" in doc and "frames" in doc:
        parsed = parse_hpe3d_export(doc)
    elif "data" in doc:
        parsed = parse_gastnet(doc)
    else:
        raise KeypointFormatError("unknown keypoint file: expected hpe3d's poses.json or GAST-Net's demo JSON")
    if size is not None:
        parsed.width, parsed.height = size
    if not parsed.width or not parsed.height:
        raise KeypointFormatError(f"the {parsed.source_format} file does not record the frame size: "
                                  "pass --size WIDTHxHEIGHT (the video's size in pixels)")
    if not parsed.tracks:
        raise KeypointFormatError("the file holds no person with 2D keypoints")
    return parsed
