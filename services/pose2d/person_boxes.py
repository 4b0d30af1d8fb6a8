"""Person boxes for top-down models: the BlazePose detector on every frame, and track ids by box overlap.

The detector finds a person by hip centre and a size/rotation point (``Detection.keypoints`` 0 and 1,
about half the body's height apart: MediaPipe's ROI, a square of twice that distance x 1.25 around
the hips, holds the whole body). The body box here is the axis-aligned box around a rectangle
``2 x reach`` long along the hip -> size-point axis and ``reach`` wide across it, centred on the hips;
the top-down crop then pads it as the official code pads a detector's box.

Frames' detector windows (the whole frame plus square tiles of a wide one) go to the detector in
batched calls for the whole segment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.pose2d.blazepose import Detection, box_iou, decode_detections, detector_input, same_place, square_tiles
from services.pose2d.client import BlazePoseModels

BODY_WIDTH_OF_REACH = 1.0     # body rectangle width / reach
TRACK_IOU = 0.3               # a box continues a track of the previous frame when they overlap more


@dataclass(frozen=True)
class PersonBox:
    """A person in one frame: ``box`` (x0, y0, x1, y1) pixels, detector ``score`` 0..1, ``track_id``."""

    box: tuple[float, float, float, float]
    score: float
    track_id: int = -1


def body_box(det: Detection) -> tuple[float, float, float, float]:
    """The axis-aligned body box of a detection (see the module docstring)."""
    hip, top = det.keypoints[0], det.keypoints[1]
    axis = top - hip
    reach = float(np.hypot(*axis)) or 1.0
    along = axis / reach
    across = np.array([-along[1], along[0]], np.float32)
    half_long, half_wide = reach, 0.5 * BODY_WIDTH_OF_REACH * reach
    corners = np.array([hip + sa * half_long * along + sb * half_wide * across
                        for sa in (-1, 1) for sb in (-1, 1)])
    return (float(corners[:, 0].min()), float(corners[:, 1].min()),
            float(corners[:, 0].max()), float(corners[:, 1].max()))


def detect_people(frames: list[np.ndarray], models: BlazePoseModels, max_persons: int,
                  min_score: float = 0.5, search_tiles: bool = True) -> list[list[PersonBox]]:
    """The best ``max_persons`` people of every frame (BGR uint8), best first, without track ids."""
    windows: list[tuple[int, tuple[int, int, int, int]]] = []
    for f, frame in enumerate(frames):
        h, w = frame.shape[:2]
        windows.append((f, (0, 0, w, h)))
        if search_tiles:
            windows += [(f, (x, y, side, side)) for x, y, side in square_tiles(w, h)]
    found: list[list[Detection]] = [[] for _ in frames]
    if windows:
        size = models.info.detector_size
        tensors = np.empty((len(windows), size, size, 3), np.uint8)
        letterboxes = []
        for i, (f, (x, y, ww, hh)) in enumerate(windows):
            tensors[i], letterbox = detector_input(frames[f][y:y + hh, x:x + ww], size)
            letterboxes.append(letterbox)
        regressors, scores = models.detect(tensors)
        for i, (f, (x, y, _, _)) in enumerate(windows):
            found[f] += [d.shifted(x, y) for d in decode_detections(regressors[i], scores[i], letterboxes[i],
                                                                   min_score=min_score)]
    people = []
    for dets in found:
        kept: list[Detection] = []
        for det in sorted(dets, key=lambda d: -d.score):
            if det.reach >= 1 and not any(same_place(det.keypoints[0], det.reach, k.keypoints[0], k.reach)
                                          for k in kept):
                kept.append(det)
        people.append([PersonBox(body_box(d), d.score) for d in kept[:max_persons]])
    return people


def assign_tracks(frames: list[list[PersonBox]], min_iou: float = TRACK_IOU) -> list[list[PersonBox]]:
    """Track ids from 0 in order of first appearance: each box takes the id of the previous frame's
    box it overlaps most (IoU above ``min_iou``, best pairs first, each id once); the rest start new
    tracks. Each frame's people come out sorted by track id."""
    next_id = 0
    previous: list[PersonBox] = []
    out = []
    for people in frames:
        pairs = sorted(((box_iou(p.box, q.box), i, j) for i, p in enumerate(people) for j, q in enumerate(previous)),
                       reverse=True)
        ids: dict[int, int] = {}
        taken: set[int] = set()
        for iou, i, j in pairs:
            if iou <= min_iou:
                break
            if i not in ids and j not in taken:
                ids[i] = previous[j].track_id
                taken.add(j)
        current = []
        for i, p in enumerate(people):
            if i not in ids:
                ids[i] = next_id
                next_id += 1
            current.append(PersonBox(p.box, p.score, ids[i]))
        previous = sorted(current, key=lambda p: p.track_id)
        out.append(previous)
    return out
