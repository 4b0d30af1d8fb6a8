"""The keypoint models as the multi-person loop (``people.py``) uses them: a person's region from a
detector box, keypoints in a batch of regions, and each person's region on the next frame from the
keypoints just found (so the detector need not run on every frame).

* ``BlazePoseFollower``: BlazePose GHUM's landmark model (33 landmarks; COCO-17 is their subset).
  A detector box becomes an upright square ROI on the box centre, 1.25 x its longer side; a new
  person's landmarks are then found again in the ROI those landmarks give -- centred on the hips,
  sized by the body, rotated upright, as BlazePose's own detector -> ROI -> landmarks chain aligns it
  -- and kept when the model is sure of a person there. On a still image (``still``) the box ROI is
  1.4 x (room for a box that cuts a limb), the aligned pass is made twice, and of the passes the one
  with the highest pose flag is kept (a box ROI the model doubts often gives a sure aligned one, and
  an aligned ROI thrown off by a wrong first pass does not replace a good one). In video the person
  is seen again on the next frames, and the still image's settings there let half-hidden people
  behind others come back as duplicates (two people of the office clip followed as five on some
  frames) and a tracked person change id, so they are for still images. Afterwards the ROI follows
  the auxiliary landmarks 33/34.
  The landmark model was made to find one prominent person in its crop: given a square around a
  person half hidden behind another, it finds the one in front. So the crops of a person whose box
  overlaps someone else's show only their box (``KEEP_MARGIN`` around it; black elsewhere): the
  caller passes those boxes.
* ``TopDownFollower``: a top-down heatmap model (HRNet, SimpleBaseline): the box is cut out as the
  official code does (``topdown.crop_box``); the next frame's box is the confident joints' extent,
  grown to hold the head top and the feet.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from services.common.skeletons import blazepose33_to_coco17
import cv2

from services.pose2d.blazepose import MIN_POSE_FLAG, Landmarks, Roi, decode_landmarks, frame_to_crop, landmark_input
from services.pose2d.client import BlazePoseModels
from services.pose2d.topdown import topdown_keypoints
from services.pose2d.topdown_client import HeatmapModel

ROI_OF_BOX = 1.25                 # BlazePose ROI side / the detector box's longer side, in video
ROI_OF_BOX_STILL = 1.4            # ... on a still image (bench/eval_2d.py measures both)
ALIGNED_PASSES_STILL = 2          # a still image's new person: landmarks found again this many times, each in
                                  # the aligned ROI the previous pass's landmarks give
REFINE_MIN_FLAG_STILL = 0.1       # ... a pass followed by another only if its pose flag is at least this
KEEP_MARGIN = 0.1                 # what a masked crop keeps around the person's box, of the box's height
MIN_TOPDOWN_SCORE = 0.3           # a top-down person is there when their joints' mean peak reaches this
JOINT_SEEN = 0.3                  # joints scoring this much make the next frame's box
#: the joints' extent grown to a person's box: (left, top, right, bottom) as fractions of its width / height
JOINTS_TO_BOX = (0.1, 0.15, 0.1, 0.05)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FoundPerson:
    """A person's keypoints in one frame (pixels of the frame given): ``coco17`` [17, 3] x, y, score;
    ``blazepose33`` [33, 3] or None; ``box`` around the body; ``score`` 0..1 that a person is there
    (``present`` when high enough); ``next_region`` where to look on the next frame."""

    coco17: np.ndarray
    blazepose33: np.ndarray | None
    box: Box
    score: float
    present: bool
    next_region: Any


class KeypointFollower(Protocol):
    def region_from_box(self, box: Box, still: bool = False) -> Any:
        """The region to run the model on for a person in detector box ``box`` (``still``: of a
        still image)."""

    def find(self, frame_bgr: np.ndarray, regions: list[Any], new: bool = False,
             boxes: list[Box | None] | None = None, still: bool = False) -> list[FoundPerson]:
        """Keypoints of the persons in ``regions`` of one frame, in one batched model call
        (``new``: the regions come from detector boxes, the first sight of these persons; ``boxes``:
        per region the box the person is known to be in, or None: a model that would look past it
        sees only it; ``still``: the frame is a still image, worth more model calls per person)."""


class BlazePoseFollower:
    def __init__(self, models: BlazePoseModels, refine_with_heatmap: bool = True):
        self.models = models
        self.refine_with_heatmap = refine_with_heatmap
        self.crops = 0

    def region_from_box(self, box: Box, still: bool = False) -> Roi:
        x0, y0, x1, y1 = box
        scale = ROI_OF_BOX_STILL if still else ROI_OF_BOX
        return Roi((x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0, 1.0), 0.0)

    def _landmarks(self, frame: np.ndarray, rois: list[Roi], keep: list[Box | None]) -> list[Landmarks]:
        if not rois:  # e.g. no new person worth a second pass: no call with an empty batch
            return []
        size = self.models.info.landmark_size
        crops = np.empty((len(rois), size, size, 3), np.uint8)
        for i, roi in enumerate(rois):
            landmark_input(frame, roi, size, out=crops[i])
            if keep[i] is not None:
                mask_outside(crops[i], keep[i], roi)
        out = self.models.landmarks(crops, heatmap=self.refine_with_heatmap)
        self.crops += len(rois)
        heatmaps = out.get("heatmap")
        return [decode_landmarks(out["landmarks"][i], float(out["pose_flag"][i].ravel()[0]), roi,
                                 None if heatmaps is None else heatmaps[i], crop_size=size)
                for i, roi in enumerate(rois)]

    def find(self, frame_bgr: np.ndarray, regions: list[Roi], new: bool = False,
             boxes: list[Box | None] | None = None, still: bool = False) -> list[FoundPerson]:
        if not regions:
            return []
        keep = [None if b is None else grown(b) for b in boxes] if boxes is not None else [None] * len(regions)
        found = self._landmarks(frame_bgr, regions, keep)
        if new and still:
            found = self._aligned(frame_bgr, found, keep, ALIGNED_PASSES_STILL)
        elif new:
            again = [i for i, lm in enumerate(found) if lm.pose_flag >= MIN_POSE_FLAG]
            refined = self._landmarks(frame_bgr, [found[i].next_roi() for i in again], [keep[i] for i in again])
            for i, lm in zip(again, refined):
                if lm.pose_flag >= MIN_POSE_FLAG:
                    found[i] = lm
        out = []
        for lm in found:
            kp = lm.keypoints()
            out.append(FoundPerson(blazepose33_to_coco17(kp), kp, lm.body_box(), lm.pose_flag,
                                   lm.pose_flag >= MIN_POSE_FLAG, lm.next_roi()))
        return out

    def _aligned(self, frame: np.ndarray, found: list[Landmarks], keep: list[Box | None],
                 passes: int) -> list[Landmarks]:
        """Each person's landmarks found again ``passes`` times, each time in the ROI the previous
        pass's landmarks give (``Landmarks.next_roi``); per person the pass with the highest pose
        flag is kept."""
        best = list(found)
        current = list(found)
        for _ in range(passes):
            again = [i for i, lm in enumerate(current) if lm.pose_flag >= REFINE_MIN_FLAG_STILL]
            if not again:
                break
            refined = self._landmarks(frame, [current[i].next_roi() for i in again], [keep[i] for i in again])
            for i, lm in zip(again, refined):
                current[i] = lm
                if lm.pose_flag > best[i].pose_flag:
                    best[i] = lm
        return best


def grown(box: Box, margin: float = KEEP_MARGIN) -> Box:
    """``box`` grown by ``margin`` of its height on every side (a narrow box of a half-hidden person
    keeps room for the arms)."""
    x0, y0, x1, y1 = box
    d = margin * (y1 - y0)
    return x0 - d, y0 - d, x1 + d, y1 + d


def mask_outside(crop: np.ndarray, box: Box, roi: Roi) -> None:
    """Black out the pixels of a landmark crop (of ``roi``) that lie outside frame box ``box``."""
    x0, y0, x1, y1 = box
    corners = frame_to_crop(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), roi, crop.shape[0])
    inside = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(corners).astype(np.int32)], 1)
    np.multiply(crop, inside[..., None], out=crop)   # x 0 outside, x 1 inside: one pass, no boolean indexing


def box_of_joints(coco17: np.ndarray, fallback: Box) -> Box:
    """The person's box from their confident joints (``JOINTS_TO_BOX`` around their extent), or
    ``fallback`` when fewer than three are confident."""
    seen = coco17[coco17[:, 2] >= JOINT_SEEN, :2]
    if len(seen) < 3:
        return fallback
    (x0, y0), (x1, y1) = seen.min(axis=0), seen.max(axis=0)
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    left, top, right, bottom = JOINTS_TO_BOX
    return float(x0 - left * w), float(y0 - top * h), float(x1 + right * w), float(y1 + bottom * h)


class TopDownFollower:
    def __init__(self, model: HeatmapModel, flip_test: bool = True):
        self.model = model
        self.flip_test = flip_test
        self.crops = 0

    def region_from_box(self, box: Box, still: bool = False) -> Box:
        return tuple(float(v) for v in box)

    def find(self, frame_bgr: np.ndarray, regions: list[Box], new: bool = False,
             boxes: list[Box | None] | None = None, still: bool = False) -> list[FoundPerson]:
        if not regions:
            return []
        keypoints = topdown_keypoints([frame_bgr], [list(regions)], self.model, self.flip_test)
        self.crops += len(regions) * (2 if self.flip_test else 1)
        out = []
        for kp, region in zip(keypoints, regions):
            score = float(np.sort(kp[:, 2])[-8:].mean())     # the best 8 joints: a person partly hidden still counts
            box = box_of_joints(kp, region)
            out.append(FoundPerson(kp, None, box, score, score >= MIN_TOPDOWN_SCORE, box))
        return out
