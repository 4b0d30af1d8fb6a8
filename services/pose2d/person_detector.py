"""People in a frame from the served person detector (NanoDet, model ``person_detector``): boxes in
frame pixels with scores.

Everything about the model -- input name and size, output names, its grids and their strides, the
number of bins, the batch limit -- comes from the config the server reports (the model's
``config.pbtxt``); nothing about its tensors is restated here.

Decoding (NanoDet's Generalized Focal Loss head, learnt from the paper and RangiLyu/nanodet):
each cell of a stride-s grid sits at ((col + 0.5) s, (row + 0.5) s) of the model input; its score
is the person class's quality score (sigmoid, already applied in the model); its box is four
distances (left, top, right, bottom), each given as logits over bins 0..B-1 whose softmax is a
distribution: the distance is the distribution's expectation times s. Boxes above ``min_score``
go through non-maximum suppression; the survivors are mapped back through the letterbox.

Small people: the whole frame is letterboxed into the input, so a person 1/8 of a 1080p frame's
height is about 29 input pixels tall. ``tiles=True`` also runs square windows of 2/3 of the
frame's shorter side (overlapping by at least a quarter of a side, so a person up to that tall is
whole in one of them); a box cut by a window's inner edge is dropped (the person is whole in the
frame or in a neighbouring window), and all boxes of a frame share one suppression.

The functions here take numpy arrays and a model object with ``info`` and ``infer``; only
``TritonPersonDetector`` talks to a server.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import cv2
import numpy as np

from services.common.errors import DependencyUnavailable
from services.pose2d.triton_errors import triton_error   # outage or permanent error, as every Triton client
from services.pose2d.triton_shm import TritonTensors

MODEL_NAME = "person_detector"
MIN_SCORE = 0.35            # person score a box needs (bench/eval_detector.py measures the choice)
NMS_IOU = 0.6               # boxes overlapping a better one more than this are the same person
TILE_SIDE = 2 / 3           # tile side / the frame's shorter side
TILE_MIN_OVERLAP = 0.25     # neighbouring tiles overlap by at least this fraction of a side
INNER_EDGE_PX = 2.0         # a tile box this close to an inner tile edge is cut by it


@dataclass(frozen=True)
class DetectorLevel:
    """One grid of the detector: its ``stride`` (input pixels per cell), ``rows`` x ``cols`` cells, and
    the outputs holding its person scores ``[cells]`` and distance bins ``[cells, 4 x bins]``."""

    stride: int
    rows: int
    cols: int
    scores_name: str
    bins_name: str


@dataclass(frozen=True)
class DetectorInfo:
    """What the served detector takes and gives: RGB bytes ``height`` x ``width``; per grid
    (``levels``, finest first) a person score and 4 x ``bins`` distance logits per cell."""

    name: str
    input_name: str
    width: int
    height: int
    levels: tuple[DetectorLevel, ...]
    bins: int
    max_batch_size: int

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(level.stride for level in self.levels)

    @property
    def cells(self) -> int:
        return sum(level.rows * level.cols for level in self.levels)

    @classmethod
    def from_config(cls, config: dict) -> "DetectorInfo":
        """From a model config as JSON (Triton's ``get_model_config(as_json=True)["config"]``, or a
        parsed config.pbtxt); ValueError naming what does not fit. Each [cells] output pairs with
        the [cells, 4 x bins] output of the same length; the grid's stride is the one whose cells
        cover the input (``ceil(H / s) * ceil(W / s) == cells``)."""
        name = config.get("name", "?")
        inputs, outputs = config.get("input", []), config.get("output", [])
        if len(inputs) != 1:
            raise ValueError(f"model {name!r}: one input expected, found {len(inputs)}")
        image = inputs[0]
        dims = [int(d) for d in image.get("dims", [])]
        if image.get("data_type") != "TYPE_UINT8" or len(dims) != 3 or dims[2] != 3:
            raise ValueError(f"model {name!r}: input {image.get('name')} {image.get('data_type')} {dims} is not "
                             "UINT8 [H, W, 3]")
        height, width = dims[0], dims[1]
        scores = {int(o["dims"][0]): o["name"] for o in outputs if len(o.get("dims", [])) == 1}
        bins = {int(o["dims"][0]): (o["name"], int(o["dims"][1])) for o in outputs if len(o.get("dims", [])) == 2}
        if not scores or sorted(scores) != sorted(bins) or len(scores) + len(bins) != len(outputs):
            raise ValueError(f"model {name!r}: expected pairs of [cells] score and [cells, 4 x bins] outputs, "
                             f"found {[(o.get('name'), o.get('dims')) for o in outputs]}")
        values = {v for _, v in bins.values()}
        if len(values) != 1 or next(iter(values)) % 4:
            raise ValueError(f"model {name!r}: bin outputs of {sorted(values)} values; 4 x bins, the same for all")
        levels = []
        for cells, scores_name in scores.items():
            stride = round(math.sqrt(height * width / cells))
            rows, cols = math.ceil(height / max(stride, 1)), math.ceil(width / max(stride, 1))
            if stride < 1 or rows * cols != cells:
                raise ValueError(f"model {name!r}: output {scores_name} has {cells} cells, no grid of a "
                                 f"{width}x{height} input")
            levels.append(DetectorLevel(stride, rows, cols, scores_name, bins[cells][0]))
        return cls(name, image["name"], width, height, tuple(sorted(levels, key=lambda lv: lv.stride)),
                   next(iter(values)) // 4, int(config.get("max_batch_size") or 1))


class PersonDetectorModel(Protocol):
    info: DetectorInfo

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 ``[N, height, width, 3]`` -> scores ``[N, cells]``, bins ``[N, cells, 4 x bins]``,
        the levels' cells concatenated finest first (``levels_joined``)."""


@dataclass(frozen=True)
class PersonDetection:
    """A person in a frame: ``box`` (x0, y0, x1, y1) frame pixels, detector ``score`` 0..1."""

    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class Window:
    """A region of a frame (pixels) given to the detector on its own, and its letterbox into the
    input: input = (frame - (x, y)) * scale + (pad_x, pad_y)."""

    x: int
    y: int
    width: int
    height: int
    frame_width: int
    frame_height: int

    def inner_edges(self) -> tuple[bool, bool, bool, bool]:
        """Whether the left, top, right, bottom edges lie inside the frame (not on its border)."""
        return (self.x > 0, self.y > 0, self.x + self.width < self.frame_width,
                self.y + self.height < self.frame_height)


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: float
    pad_y: float


def letterbox(frame_bgr: np.ndarray, window: Window, width: int, height: int) -> tuple[np.ndarray, Letterbox]:
    """The window of a BGR frame fitted (aspect kept, centred, black borders) into an RGB uint8
    ``[height, width, 3]`` input."""
    region = frame_bgr[window.y:window.y + window.height, window.x:window.x + window.width]
    scale = min(width / window.width, height / window.height)
    nw, nh = max(1, round(window.width * scale)), max(1, round(window.height * scale))
    pad_x, pad_y = (width - nw) // 2, (height - nh) // 2
    tensor = np.zeros((height, width, 3), np.uint8)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(region, (nw, nh), interpolation=interpolation)
    tensor[pad_y:pad_y + nh, pad_x:pad_x + nw] = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return tensor, Letterbox(scale, float(pad_x), float(pad_y))


@lru_cache(maxsize=8)
def grid_cells(width: int, height: int, strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres ``[cells, 2]`` (x, y, input pixels) and each cell's stride ``[cells]``: the grids
    of ``strides`` in that order, each row by row."""
    centres, cell_strides = [], []
    for s in strides:
        rows, cols = math.ceil(height / s), math.ceil(width / s)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres.append(np.stack([(xs.ravel() + 0.5) * s, (ys.ravel() + 0.5) * s], axis=1))
        cell_strides.append(np.full(rows * cols, s))
    return np.concatenate(centres).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def bin_distances(bins: np.ndarray, num_bins: int) -> np.ndarray:
    """``[k, 4 x num_bins]`` logits -> ``[k, 4]`` expected distances in strides (softmax over each
    side's bins, then the mean bin index)."""
    logits = bins.reshape(-1, 4, num_bins).astype(np.float64)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    return (p @ np.arange(num_bins, dtype=np.float64)).astype(np.float32)


def decode(scores: np.ndarray, bins: np.ndarray, info: DetectorInfo,
           min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray]:
    """One input's outputs -> boxes ``[k, 4]`` (x0, y0, x1, y1, input pixels) and scores ``[k]`` of
    the cells scoring at least ``min_score`` (before suppression)."""
    if scores.shape != (info.cells,) or bins.shape != (info.cells, 4 * info.bins):
        raise ValueError(f"detector outputs {scores.shape} and {bins.shape} are not [{info.cells}] and "
                         f"[{info.cells}, {4 * info.bins}]")
    keep = np.flatnonzero(scores >= min_score)
    centres, strides = grid_cells(info.width, info.height, info.strides)
    d = bin_distances(bins[keep], info.bins) * strides[keep, None]
    c = centres[keep]
    boxes = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1)
    return boxes, scores[keep].astype(np.float32)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` ``[n, 4]`` with every box of ``b`` ``[m, 4]`` (x0, y0, x1, y1)."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def suppress(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for i in order:
        if not kept or box_iou_matrix(boxes[i:i + 1], boxes[kept]).max() <= iou_threshold:
            kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def windows(frame_width: int, frame_height: int, tiles: bool = False) -> list[Window]:
    """The whole frame, and with ``tiles`` a grid of square windows (see the module docstring)."""
    out = [Window(0, 0, frame_width, frame_height, frame_width, frame_height)]
    if not tiles:
        return out
    side = max(1, round(TILE_SIDE * min(frame_width, frame_height)))

    def starts(length: int) -> list[int]:
        if side >= length:
            return [0]
        n = max(2, math.ceil((length - TILE_MIN_OVERLAP * side) / ((1 - TILE_MIN_OVERLAP) * side)))
        return [round(i * (length - side) / (n - 1)) for i in range(n)]

    out += [Window(x, y, min(side, frame_width), min(side, frame_height), frame_width, frame_height)
            for y in starts(frame_height) for x in starts(frame_width)]
    return out


def to_frame(boxes: np.ndarray, window: Window, lb: Letterbox) -> np.ndarray:
    """Input-pixel boxes of a window -> frame pixels, clipped to the window."""
    out = np.empty_like(boxes)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - lb.pad_x) / lb.scale + window.x
    out[:, [1, 3]] = (boxes[:, [1, 3]] - lb.pad_y) / lb.scale + window.y
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], window.x, window.x + window.width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], window.y, window.y + window.height)
    return out


def cut_by_inner_edge(boxes: np.ndarray, window: Window, margin: float = INNER_EDGE_PX) -> np.ndarray:
    """Which frame-pixel boxes touch an edge of the window that lies inside the frame."""
    left, top, right, bottom = window.inner_edges()
    cut = np.zeros(len(boxes), bool)
    if left:
        cut |= boxes[:, 0] <= window.x + margin
    if top:
        cut |= boxes[:, 1] <= window.y + margin
    if right:
        cut |= boxes[:, 2] >= window.x + window.width - margin
    if bottom:
        cut |= boxes[:, 3] >= window.y + window.height - margin
    return cut


def detect_persons(frames_bgr: list[np.ndarray], model: PersonDetectorModel, min_score: float = MIN_SCORE,
                   tiles: bool = False, nms_iou: float = NMS_IOU) -> list[list[PersonDetection]]:
    """The people of every frame (BGR uint8), best score first; all windows of all frames go to the
    model in batches of at most its ``max_batch_size``."""
    info = model.info
    jobs: list[tuple[int, Window]] = []
    for f, frame in enumerate(frames_bgr):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frame {f}: expected BGR uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
        jobs += [(f, w) for w in windows(frame.shape[1], frame.shape[0], tiles)]
    found_boxes: list[list[np.ndarray]] = [[] for _ in frames_bgr]
    found_scores: list[list[np.ndarray]] = [[] for _ in frames_bgr]
    step = max(1, info.max_batch_size)
    for start in range(0, len(jobs), step):
        chunk = jobs[start:start + step]
        inputs = np.empty((len(chunk), info.height, info.width, 3), np.uint8)
        boxes_of = []
        for i, (f, window) in enumerate(chunk):
            inputs[i], lb = letterbox(frames_bgr[f], window, info.width, info.height)
            boxes_of.append(lb)
        scores, bins = model.infer(inputs)
        for i, (f, window) in enumerate(chunk):
            boxes, s = decode(scores[i], bins[i], info, min_score)
            boxes = to_frame(boxes, window, boxes_of[i])
            whole = ~cut_by_inner_edge(boxes, window)
            found_boxes[f].append(boxes[whole])
            found_scores[f].append(s[whole])
    people = []
    for f in range(len(frames_bgr)):
        boxes = np.concatenate(found_boxes[f]) if found_boxes[f] else np.zeros((0, 4), np.float32)
        scores = np.concatenate(found_scores[f]) if found_scores[f] else np.zeros(0, np.float32)
        sizable = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores = boxes[sizable], scores[sizable]
        kept = suppress(boxes, scores, nms_iou) if len(boxes) else np.zeros(0, np.int64)
        people.append([PersonDetection(tuple(float(v) for v in boxes[k]), float(scores[k])) for k in kept])
    return people


def levels_joined(info: DetectorInfo, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The per-level outputs of a batch as one scores ``[N, cells]`` and one bins ``[N, cells, 4 x bins]``."""
    return (np.concatenate([outputs[lv.scores_name] for lv in info.levels], axis=1),
            np.concatenate([outputs[lv.bins_name] for lv in info.levels], axis=1))


class TritonPersonDetector:
    """A Triton gRPC client of the person detector (tensors in shared memory as ``client.TritonBlazePose``
    says). A server without the model ready raises
    ``LookupError`` at construction, an unreachable one ``DependencyUnavailable``; a failed call is
    told apart as the BlazePose client does (an outage ``DependencyUnavailable``, bad arguments not)."""

    def __init__(self, url: str, name: str = MODEL_NAME, timeout_s: float = 120.0, shared_memory: str | None = None):
        import tritonclient.grpc as tgrpc
        from tritonclient.utils import InferenceServerException

        self._tgrpc = tgrpc
        self.url = url
        self.timeout_s = timeout_s
        self._client = tgrpc.InferenceServerClient(url)
        try:
            if not self._client.is_model_ready(name, client_timeout=15):
                raise LookupError(f"Triton at {url} has no ready model {name!r} (its model file is made by "
                                  "`make detector`)")
            config = self._client.get_model_config(name, as_json=True, client_timeout=15)["config"]
        except InferenceServerException as exc:
            self._client.close()
            raise DependencyUnavailable(f"Triton at {url} did not answer about {name}: {exc}") from exc
        except LookupError:
            self._client.close()
            raise
        self.info = DetectorInfo.from_config(config)
        self.tensors = TritonTensors(self._client, tgrpc, url, shared_memory)

    def close(self) -> None:
        self.tensors.close()
        self._client.close()

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from tritonclient.utils import InferenceServerException

        names = [n for lv in self.info.levels for n in (lv.scores_name, lv.bins_name)]
        try:
            reply = self.tensors.infer(self.info.name, {self.info.input_name: np.ascontiguousarray(images, np.uint8)},
                                       names, self.timeout_s)
        except InferenceServerException as exc:
            raise triton_error(exc, self.url, self.info.name, served_before=True) from exc
        return levels_joined(self.info, reply)
