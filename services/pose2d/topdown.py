"""Top-down 2D pose (HRNet, SimpleBaseline) as the official code runs it, in numpy + OpenCV.

For each person box: the box is widened or heightened to the model's aspect (width / height of the
crop, 3:4), enlarged 1.25x, and cut out of the frame by an affine warp (no rotation; black outside
the frame) to the model's input size; the model gives one heatmap per COCO-17 joint at a quarter of
that size. A joint is the heatmap's arg-max moved a quarter heatmap pixel toward the higher
neighbour on each axis (sub-pixel refinement), its score the peak value; the heatmap point maps
back to the frame through the same box. With the flip test the mirrored crop runs too: its heatmaps
are mirrored back (left and right joints swapped), shifted one heatmap pixel right as the official
code does, and averaged with the direct ones.

``topdown_keypoints`` runs it for every person box of a batch of frames in one model call (the client
splits it into requests of at most the model's ``max_batch_size``).

Coordinates are pixels of the frame given, x right, y down; a box is (x0, y0, x1, y1).
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    from services.pose2d.topdown_client import HeatmapModel

# COCO-17 left/right pairs (eyes, ears, shoulders, elbows, wrists, hips, knees, ankles)
COCO17_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
BOX_PADDING = 1.25


@dataclass(frozen=True)
class CropBox:
    """Where a crop comes from: centre (pixels) and the size (pixels) of the frame region that maps
    onto the whole crop; ``width / height`` equals the model input's aspect."""

    cx: float
    cy: float
    width: float
    height: float

    def crop_matrix(self, out_w: int, out_h: int) -> np.ndarray:
        """2x3 affine map frame pixel -> crop pixel (``out_w`` x ``out_h``)."""
        s = out_w / self.width
        return np.array([[s, 0.0, out_w * 0.5 - s * self.cx],
                         [0.0, s, out_h * 0.5 - s * self.cy]], np.float64)

    def to_frame(self, points: np.ndarray, grid_w: int, grid_h: int) -> np.ndarray:
        """Points ``[..., 2]`` on a ``grid_w`` x ``grid_h`` grid over the crop (the crop itself or its
        heatmap) -> frame pixels."""
        out = np.empty_like(points, dtype=np.float32)
        out[..., 0] = self.cx + (points[..., 0] - grid_w * 0.5) * (self.width / grid_w)
        out[..., 1] = self.cy + (points[..., 1] - grid_h * 0.5) * (self.height / grid_h)
        return out


def crop_box(box: tuple[float, float, float, float], aspect: float, padding: float = BOX_PADDING) -> CropBox:
    """The official ``_box2cs``: a person box -> a crop region of aspect ``aspect`` (width / height),
    the box's short side lengthened to fit, both sides times ``padding``."""
    x0, y0, x1, y1 = box
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return CropBox((x0 + x1) * 0.5, (y0 + y1) * 0.5, w * padding, h * padding)


def cut_crop(frame: np.ndarray, region: CropBox, out_w: int, out_h: int,
             out: np.ndarray | None = None) -> np.ndarray:
    """The region of ``frame`` warped to ``out_h`` x ``out_w`` x 3 (bilinear, black outside; channels as given)."""
    return cv2.warpAffine(frame, region.crop_matrix(out_w, out_h), (out_w, out_h), dst=out,
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def flip_back(heatmaps: np.ndarray, pairs=COCO17_FLIP_PAIRS, shift: bool = True) -> np.ndarray:
    """Heatmaps ``[N, J, h, w]`` of mirrored crops -> heatmaps of the unmirrored ones: mirrored along
    x, left and right joints swapped, and (``shift``, as the official test) moved one pixel right."""
    out = heatmaps[..., ::-1].copy()
    for a, b in pairs:
        out[:, [a, b]] = out[:, [b, a]]
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


def decode_heatmaps(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``[N, J, h, w]`` -> joints ``[N, J, 2]`` in heatmap pixels and scores ``[N, J]``:
    the arg-max, moved 0.25 toward the higher neighbour on each axis, as the official
    ``get_final_preds`` does: only where the arg-max lies strictly inside ``1 < x < w - 1`` and
    ``1 < y < h - 1`` (its bounds, kept so the output equals the official decoding); a heatmap with
    no positive value gives its arg-max and a score <= 0."""
    n, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, j, h * w)
    idx = flat.argmax(axis=2)
    scores = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    px, py = (idx % w).astype(np.int64), (idx // w).astype(np.int64)
    coords = np.stack([px, py], axis=-1).astype(np.float32)
    inner = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    ni, ji = np.nonzero(inner)
    if ni.size:
        x, y = px[ni, ji], py[ni, ji]
        dx = heatmaps[ni, ji, y, x + 1] - heatmaps[ni, ji, y, x - 1]
        dy = heatmaps[ni, ji, y + 1, x] - heatmaps[ni, ji, y - 1, x]
        coords[ni, ji, 0] += np.sign(dx) * 0.25
        coords[ni, ji, 1] += np.sign(dy) * 0.25
    return coords, scores.astype(np.float32)


def keypoints_in_frame(heatmaps: np.ndarray, regions: list[CropBox]) -> np.ndarray:
    """Heatmaps ``[N, 17, h, w]`` of the crops of ``regions`` -> COCO-17 ``[N, 17, 3]``: x, y in
    frame pixels and the heatmap peak as the score (clipped to 0..1)."""
    coords, scores = decode_heatmaps(heatmaps)
    h, w = heatmaps.shape[2:]
    out = np.empty((len(regions), heatmaps.shape[1], 3), np.float32)
    for i, region in enumerate(regions):
        # heatmap pixel centres: the official code maps heatmap index k to crop coordinate k * stride
        out[i, :, :2] = region.to_frame(coords[i], w, h)
    out[:, :, 2] = np.clip(scores, 0.0, 1.0)
    return out


def crops_of(frames_bgr: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]], width: int,
             height: int) -> tuple[np.ndarray, list[CropBox]]:
    """All RGB crops ``[N, height, width, 3]`` of BGR frames and their regions, frame by frame, box by
    box (only the crops are converted to RGB, not the frames)."""
    regions = [crop_box(box, width / height) for frame_boxes in boxes for box in frame_boxes]
    crops = np.empty((len(regions), height, width, 3), np.uint8)
    k = 0
    for frame, frame_boxes in zip(frames_bgr, boxes):
        for _ in frame_boxes:
            cut_crop(frame, regions[k], width, height, out=crops[k])
            cv2.cvtColor(crops[k], cv2.COLOR_BGR2RGB, dst=crops[k])
            k += 1
    return crops, regions


def topdown_keypoints(frames_bgr: list[np.ndarray], boxes: list[list[tuple[float, float, float, float]]],
                      model: "HeatmapModel", flip_test: bool = True) -> list[np.ndarray]:
    """COCO-17 ``[17, 3]`` (frame pixels, score) of every person box of every BGR frame, in order."""
    info = model.info
    crops, regions = crops_of(frames_bgr, boxes, info.width, info.height)
    if not regions:
        return []
    batch = np.concatenate([crops, crops[:, :, ::-1]]) if flip_test else crops
    heatmaps = model.heatmaps(batch)
    if flip_test:
        heatmaps = 0.5 * (heatmaps[:len(regions)] + flip_back(heatmaps[len(regions):]))
    return list(keypoints_in_frame(heatmaps, regions))
