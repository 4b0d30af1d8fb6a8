"""BlazePose GHUM's pre- and post-processing, as MediaPipe's pose graphs do it, in numpy + OpenCV.

Nothing here talks to a server: these functions turn frames into model inputs and model outputs
into pixels. The models' tensors (input sides, anchor count, landmark count, heatmap side) are
those of their config.pbtxt in ``services/triton/repository``, which the client reads from the
server (``client.BlazePoseInfo``) and the callers pass in. What stays here is MediaPipe's algorithm
(``pose_detection_cpu.pbtxt``, ``pose_detection_to_roi.pbtxt``, ``pose_landmarks_to_roi.pbtxt``,
``tensors_to_pose_landmarks_and_segmentation.pbtxt``):

* Detector: the frame letterboxed (aspect kept, zero border) to the model's square input, RGB
  bytes (the served model scales them); SSD anchors from strides 8, 16, 32, 32, 32 (fixed size,
  offsets 0.5: ``SSD_STRIDES``, ``SSD_OFFSET``); each anchor regresses a box and 4 keypoints in
  input-pixel units; scores are logits clipped to +-100 then sigmoid; detections below 0.5
  dropped; weighted NMS at IoU 0.3.
* ROI: a square centred on keypoint 0 (mid-hip), side = 2 x |kp1 - kp0| x 1.25, rotated so that
  kp0 -> kp1 points up (kp1 encodes the body's size and rotation).
* Landmark model: the ROI cropped (rotated, zero border) to the model's square input, RGB bytes;
  per landmark (x, y, z, visibility, presence) in crop pixels, visibility and presence as logits;
  x, y refined from the heatmaps (7x7 window, sigmoid confidence >= 0.5); pose flag >= 0.5 means
  "a person is there". The first 33 landmarks are the body's; the next frame's ROI comes from the
  auxiliary landmarks 33 (centre) and 34 (size/rotation point) with the same 1.25 rule.

Coordinates are pixels of the image given, x right, y down. A ``Roi`` rotation is in radians,
clockwise on screen; crop point (u, v) in [0, S] (S the crop side) maps to ``centre + R(rotation)
@ ((u, v) / S - 0.5) * size`` (MediaPipe's corner-to-corner convention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

NUM_BODY_LANDMARKS = 33
VALUES_PER_LANDMARK = 5          # x, y, z, visibility, presence
SSD_STRIDES = (8, 16, 32, 32, 32)    # MediaPipe's anchor generation for the detector (pose_detection_cpu.pbtxt);
SSD_OFFSET = 0.5                     # the anchor count they give must equal the config's (client.BlazePoseInfo)
ROI_SCALE = 1.25
MIN_DETECTION_SCORE = 0.5
NMS_IOU = 0.3
MIN_POSE_FLAG = 0.5
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5
AUX_CENTRE, AUX_SCALE = 33, 34


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


# -- SSD anchors ------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def ssd_anchors(input_size: int, strides: tuple[int, ...] = SSD_STRIDES, offset: float = SSD_OFFSET) -> np.ndarray:
    """Anchor centres ``[N, 2]`` (x, y, normalised) of MediaPipe's ``SsdAnchorsCalculator`` with
    ``fixed_anchor_size`` and one aspect ratio (plus the interpolated one): 2 anchors per cell and
    per layer; consecutive layers of the same stride share a grid (224: 784x2 + 196x2 + 49x6 = 2254).
    Order: layer group, then row, column, anchor."""
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = layer
        while same < len(strides) and strides[same] == stride:
            same += 1
        per_cell = 2 * (same - layer)
        cells = math.ceil(input_size / stride)
        ys, xs = np.meshgrid((np.arange(cells) + offset) / cells, (np.arange(cells) + offset) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = same
    return np.concatenate(centres).astype(np.float32)


# -- geometry -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into a square tensor: tensor = frame * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float
    size: int

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Tensor-normalised points ``[..., 2]`` (0..1 of the tensor) -> frame pixels."""
        out = np.empty_like(points, dtype=np.float32)
        out[..., 0] = (points[..., 0] * self.size - self.pad_x) / self.scale
        out[..., 1] = (points[..., 1] * self.size - self.pad_y) / self.scale
        return out


@dataclass(frozen=True)
class Roi:
    """A square region of a frame, rotated about its centre: pixels and radians (clockwise)."""

    cx: float
    cy: float
    size: float
    rotation: float

    def corners(self) -> np.ndarray:
        return crop_to_frame(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32), self, crop_size=1)

    def bounds(self) -> tuple[float, float, float, float]:
        c = self.corners()
        return float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max())


def normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_alignment(centre: np.ndarray, scale_point: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """MediaPipe's AlignmentPointsRectsCalculator (target angle 90 deg) + RectTransformation
    (square_long, x ``scale``): centre at ``centre``, side 2|scale_point - centre| x scale, rotated so
    that ``centre -> scale_point`` points up."""
    dx = float(scale_point[0] - centre[0])
    dy = float(scale_point[1] - centre[1])
    side = 2.0 * math.hypot(dx, dy) * scale
    rotation = normalize_radians(math.pi / 2 - math.atan2(-dy, dx))
    return Roi(float(centre[0]), float(centre[1]), side, rotation)


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]], np.float32)


def crop_to_frame(points: np.ndarray, roi: Roi, crop_size: int) -> np.ndarray:
    """Crop pixels ``[..., 2]`` -> frame pixels."""
    local = (np.asarray(points, np.float32) / crop_size - 0.5) * roi.size
    return local @ _rotation(roi.rotation).T + np.array([roi.cx, roi.cy], np.float32)


def frame_to_crop(points: np.ndarray, roi: Roi, crop_size: int) -> np.ndarray:
    """Frame pixels ``[..., 2]`` -> crop pixels (inverse of ``crop_to_frame``)."""
    local = (np.asarray(points, np.float32) - np.array([roi.cx, roi.cy], np.float32)) @ _rotation(roi.rotation)
    return (local / roi.size + 0.5) * crop_size


def crop_matrix(roi: Roi, crop_size: int) -> np.ndarray:
    """The 2x3 affine map crop pixel -> frame pixel (for ``cv2.warpAffine`` with WARP_INVERSE_MAP)."""
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    k, half = roi.size / crop_size, roi.size / 2
    return np.array([[c * k, -s * k, roi.cx - (c - s) * half],
                     [s * k, c * k, roi.cy - (s + c) * half]], np.float64)


def square_tiles(width: int, height: int, min_aspect: float = 1.2) -> list[tuple[int, int, int]]:
    """Square windows (x, y, side) along the long side of a frame that is at least ``min_aspect``
    times longer than wide (or tall), each overlapping the next by at least half: people too small
    for the detector in the letterboxed whole frame are twice as big in a tile (16:9 -> 3 tiles)."""
    short, long = min(width, height), max(width, height)
    if long < short * min_aspect:
        return []
    count = 1 + math.ceil((long - short) / (short / 2))
    starts = [round(i * (long - short) / (count - 1)) for i in range(count)]
    return [(s, 0, short) if width >= height else (0, s, short) for s in starts]


def same_place(centre_a: np.ndarray, reach_a: float, centre_b: np.ndarray, reach_b: float,
               tolerance: float = 0.5) -> bool:
    """Whether two alignments (hip centre, hip-to-size-point distance) describe one person: hip
    centres closer than ``tolerance`` x the larger reach. Unlike box IoU this keeps a small person
    standing inside a big person's (1.25x expanded) ROI apart from that person."""
    return float(np.hypot(*(np.asarray(centre_a) - np.asarray(centre_b)))) < tolerance * max(reach_a, reach_b)


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# -- model inputs -------------------------------------------------------------------------------------
def detector_input(frame_bgr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Letterbox a BGR uint8 frame into the detector's input, ``[size, size, 3]`` RGB uint8 with
    black borders (the served model scales it to [-1, 1]), and the letterbox to map results back."""
    h, w = frame_bgr.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    tensor = np.zeros((size, size, 3), np.uint8)
    resized = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR)
    tensor[pad_y:pad_y + nh, pad_x:pad_x + nw] = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    # Exact letterbox of the resized image: scale per axis differs from `scale` by rounding only.
    return tensor, Letterbox(scale=nw / w, pad_x=float(pad_x), pad_y=float(pad_y), size=size)


def landmark_input(frame_bgr: np.ndarray, roi: Roi, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """Crop the rotated ROI into the landmark model's input, ``[size, size, 3]`` RGB uint8, black
    outside the frame (the served model scales it to [0, 1]). Writes into ``out`` when given."""
    crop = cv2.warpAffine(frame_bgr, crop_matrix(roi, size), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
    if out is None:
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    out[...] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return out


# -- detector outputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """One person found by the detector, in frame pixels. ``box`` is the face box the model
    regresses; ``keypoints`` [4, 2] are mid-hip, full-body size/rotation point, mid-shoulder,
    upper-body size/rotation point."""

    score: float
    box: tuple[float, float, float, float]
    keypoints: np.ndarray

    def roi(self) -> Roi:
        return roi_from_alignment(self.keypoints[0], self.keypoints[1])

    @property
    def reach(self) -> float:
        """Distance from the hip centre to the size/rotation point (about half the body's height)."""
        return float(np.hypot(*(self.keypoints[1] - self.keypoints[0])))

    def shifted(self, dx: float, dy: float) -> "Detection":
        """The same detection in a frame where this one's image starts at (dx, dy)."""
        b = self.box
        return Detection(self.score, (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy),
                         self.keypoints + np.array([dx, dy], np.float32))


def decode_detections(regressors: np.ndarray, scores: np.ndarray, letterbox: Letterbox,
                      min_score: float = MIN_DETECTION_SCORE, nms_iou: float = NMS_IOU) -> list[Detection]:
    """The detector's raw outputs ``[anchors, 12]`` and ``[anchors, 1]`` for the input ``letterbox``
    made -> detections in frame pixels, best first, after weighted non-maximum suppression."""
    anchors = ssd_anchors(letterbox.size)
    regressors = regressors.reshape(len(anchors), 12)
    probs = sigmoid(np.clip(scores.reshape(len(anchors)), -100.0, 100.0))
    keep = np.flatnonzero(probs >= min_score)
    if keep.size == 0:
        return []
    anchors = anchors[keep]
    raw = regressors[keep] / letterbox.size
    centre = raw[:, 0:2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)        # normalised to the tensor
    kps = raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
    merged = weighted_nms(boxes, kps, probs[keep], nms_iou)
    out = []
    for score, box, kp in merged:
        corners = letterbox.to_frame(box.reshape(2, 2))
        out.append(Detection(float(score), (float(corners[0, 0]), float(corners[0, 1]),
                                            float(corners[1, 0]), float(corners[1, 1])),
                             letterbox.to_frame(kp)))
    return out


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float):
    """MediaPipe's WEIGHTED non-max suppression: the best remaining detection absorbs every other one
    that overlaps it by more than ``iou_threshold`` (IoU); box and keypoints become the
    score-weighted mean of the group, the score stays the best one's. Yields (score, box, keypoints)."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    result = []
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    while remaining.size:
        best = remaining[0]
        rb = boxes[remaining]
        ix = np.clip(np.minimum(rb[:, 2], boxes[best, 2]) - np.maximum(rb[:, 0], boxes[best, 0]), 0, None)
        iy = np.clip(np.minimum(rb[:, 3], boxes[best, 3]) - np.maximum(rb[:, 1], boxes[best, 1]), 0, None)
        inter = ix * iy
        union = areas[remaining] + areas[best] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        group = remaining[iou > iou_threshold]
        if group.size == 0 or best not in group:
            group = np.concatenate([[best], group])
        w = scores[group][:, None]
        total = float(w.sum())
        box = (boxes[group] * w).sum(axis=0) / total
        kp = (keypoints[group] * w[:, :, None]).sum(axis=0) / total
        result.append((float(scores[best]), box, kp))
        remaining = remaining[~np.isin(remaining, group)]
    return result


# -- landmark outputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Landmarks:
    """One person's landmarks in frame pixels (the body's 33, then the auxiliary ones): ``points``
    [L, 3] (x, y, z; z in the same pixel scale, relative to the hips), ``visibility`` and
    ``presence`` [L] in 0..1, ``pose_flag`` 0..1, and the ROI they were found in."""

    points: np.ndarray
    visibility: np.ndarray
    presence: np.ndarray
    pose_flag: float
    roi: Roi

    @property
    def present(self) -> bool:
        return self.pose_flag >= MIN_POSE_FLAG

    @property
    def reach(self) -> float:
        """Distance between the alignment landmarks (about half the body's height)."""
        return float(np.hypot(*(self.points[AUX_SCALE, :2] - self.points[AUX_CENTRE, :2])))

    def contains(self, point: np.ndarray) -> bool:
        """Whether ``point`` lies in the bounding box of the 33 body landmarks."""
        x0, y0, x1, y1 = self.body_box()
        return bool(x0 <= point[0] <= x1 and y0 <= point[1] <= y1)

    def next_roi(self) -> Roi:
        """The ROI for the next frame, from the auxiliary alignment landmarks."""
        return roi_from_alignment(self.points[AUX_CENTRE, :2], self.points[AUX_SCALE, :2])

    def body_box(self) -> tuple[float, float, float, float]:
        """Bounding box of the 33 body landmarks."""
        p = self.points[:NUM_BODY_LANDMARKS, :2]
        return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())

    def keypoints(self) -> np.ndarray:
        """BlazePose-33 ``[33, 3]``: x, y and a score = visibility x presence (both sigmoided)."""
        out = np.empty((NUM_BODY_LANDMARKS, 3), np.float32)
        out[:, :2] = self.points[:NUM_BODY_LANDMARKS, :2]
        out[:, 2] = self.visibility[:NUM_BODY_LANDMARKS] * self.presence[:NUM_BODY_LANDMARKS]
        return out


def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator: ``xy`` [L, 2] normalised to the crop,
    ``heatmap`` [H, W, L] logits. Each landmark inside the heatmap moves to the sigmoid-weighted
    centroid of the ``kernel`` x ``kernel`` window around it when the window's peak is at least
    ``min_confidence``."""
    hm_h, hm_w, count = heatmap.shape
    out = xy.astype(np.float32).copy()
    cols = np.trunc(xy[:, 0] * hm_w).astype(np.int64)   # as C++'s int conversion: toward zero
    rows = np.trunc(xy[:, 1] * hm_h).astype(np.int64)
    inside = (cols >= 0) & (cols < hm_w) & (rows >= 0) & (rows < hm_h)
    if not inside.any():
        return out
    half = (kernel - 1) // 2
    offsets = np.arange(-half, half + 1)
    idx = np.flatnonzero(inside)
    r = rows[idx, None] + offsets[None, :]                # [n, k]
    c = cols[idx, None] + offsets[None, :]
    rv = (r >= 0) & (r < hm_h)
    cv = (c >= 0) & (c < hm_w)
    valid = rv[:, :, None] & cv[:, None, :]               # [n, k, k]
    values = heatmap[np.clip(r, 0, hm_h - 1)[:, :, None], np.clip(c, 0, hm_w - 1)[:, None, :], idx[:, None, None]]
    conf = np.where(valid, sigmoid(values), 0.0)
    total = conf.sum(axis=(1, 2))
    peak = conf.max(axis=(1, 2))
    wr = (conf * r[:, :, None]).sum(axis=(1, 2))
    wc = (conf * c[:, None, :]).sum(axis=(1, 2))
    ok = (peak >= min_confidence) & (total > 0)
    sel = idx[ok]
    out[sel, 0] = wc[ok] / hm_w / total[ok]
    out[sel, 1] = wr[ok] / hm_h / total[ok]
    return out


def decode_landmarks(raw: np.ndarray, pose_flag: float, roi: Roi, heatmap: np.ndarray | None = None, *,
                     crop_size: int) -> Landmarks:
    """The landmark model's outputs for one crop of side ``crop_size`` (``raw`` [L x 5], ``heatmap``
    [H, W, L] logits or None) -> ``Landmarks`` in frame pixels."""
    lm = raw.reshape(-1, VALUES_PER_LANDMARK)
    xy = lm[:, :2] / crop_size
    if heatmap is not None:
        xy = refine_from_heatmap(xy, heatmap)
    points = np.empty((len(lm), 3), np.float32)
    points[:, :2] = crop_to_frame(xy * crop_size, roi, crop_size)
    points[:, 2] = lm[:, 2] / crop_size * roi.size
    return Landmarks(points=points, visibility=sigmoid(lm[:, 3]).astype(np.float32),
                     presence=sigmoid(lm[:, 4]).astype(np.float32), pose_flag=float(pose_flag), roi=roi)
