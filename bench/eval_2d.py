"""The 2D stage on the annotated photos of ../shared/data/eval2d: persons matched, mean OKS, COCO AP,
MPII PCKh@0.5, for the stage's path and, beside it, the former BlazePose-detector path.

    .venv/bin/python bench/eval_2d.py [--local] [--max-persons 8] [--working-size 640] [--paths people,blazepose]
                                      [--topdown DIR/hrnet_w32 ...]

Each photo goes through the decoder's own code (``decode_segment``: EXIF, working size, JPEG) into a
one-frame segment and then through the pose2d code the stage runs, with the models served by a real
Triton host (the Triton host of the local stack, started and stopped here; ``--local`` runs the
same model folders in this process instead):

* ``people``     the stage's path (``people.estimate_segment_people``): the person detector (NanoDet,
                 with tiles on a photo), BlazePose's landmark model on every person found;
* ``blazepose``  the former path (``segment.estimate_segment``): BlazePose's own detector and landmark
                 model, as MediaPipe's pose graph (same ``max_persons``);
* ``topdown:NAME`` with ``--topdown FOLDER`` (a model folder ``hpe3d models export`` wrote, e.g.
                 ``~/hpe3d-models/hrnet_w32``; repeatable): the stage's path with that HRNet /
                 SimpleBaseline model on the same detector boxes (``keypoint_followers.TopDownFollower``,
                 flip test on), run in this process by ONNX Runtime.

Scores, in each set's own joints that COCO-17 also has (OCHuman: all 17; CrowdPose and AI Challenger:
shoulders to ankles; PoseTrack18: nose, ears, shoulders to ankles):

* persons matched: annotated persons whose best prediction (each prediction used once, greedily by
  OKS) reaches OKS >= 0.5, with COCO's sigmas and the annotation's area (its box's area where the set
  gives none);
* mean OKS: over the annotated persons, 0 for a person no prediction matches;
* AP: COCO's keypoint AP (pycocotools' ``COCOeval``, OKS thresholds 0.50:0.95) over the same
  persons, the joints a set lacks marked unlabelled. Unannotated people the stage finds (onlookers,
  PoseTrack's crowd, which COCO would put in ignore regions) count as false positives, so AP is a
  lower bound;
* MPII (single persons, 16 joints): PCKh@0.5 over the 12 joints shared with COCO-17 (shoulders to
  ankles), the head size being the distance from the upper neck to the head top; the prediction
  whose joints lie nearest the annotation is the person's.

Skips with a message when ../shared/data/eval2d is absent.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

from services.common.arrays import from_proto  # noqa: E402

EVAL2D = ROOT.parent / "shared" / "data" / "eval2d"
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10
MATCH_OKS = 0.5
PCKH_THRESHOLD = 0.5

# each set's joint order -> the COCO-17 index of each of its joints (-1: COCO-17 has no such joint)
SET_TO_COCO = {
    "ochuman": list(range(17)),
    "crowdpose": [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, -1, -1],
    "aic": [6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, -1, -1],
    "posetrack18": [0, -1, -1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
}
COCO_SETS = {
    "ochuman": ("ochuman/test_ochuman.json", "ochuman"),
    "crowdpose": ("crowdpose/test_crowdpose.json", "crowdpose"),
    "aic": ("aic/test_aic.json", "aic"),
    "posetrack18": ("posetrack18/annotations/test_posetrack18_val.json", "posetrack18"),
}
# MPII's 16 joints -> COCO-17 (r ankle, r knee, r hip, l hip, l knee, l ankle, pelvis, thorax, upper neck,
# head top, r wrist, r elbow, r shoulder, l shoulder, l elbow, l wrist)
MPII_TO_COCO = [16, 14, 12, 11, 13, 15, -1, -1, -1, -1, 10, 8, 6, 5, 7, 9]
MPII_UPPER_NECK, MPII_HEAD_TOP = 8, 9


@dataclass
class Annotated:
    """One annotated person in COCO-17 joints: ``keypoints`` [17, 3] (x, y, visibility; 0 where the set
    has no such joint or did not label it), ``area`` for OKS."""

    keypoints: np.ndarray
    area: float
    box: tuple[float, float, float, float]


@dataclass
class Photo:
    set_name: str
    path: Path
    persons: list[Annotated]
    mpii: list[np.ndarray] | None = None      # MPII: per person [16, 3] (x, y, visible)


def load_photos() -> list[Photo]:
    photos = []
    for set_name, (annotation_file, folder) in COCO_SETS.items():
        data = json.loads((EVAL2D / annotation_file).read_text())
        mapping = SET_TO_COCO[set_name]
        for im in data["images"]:
            persons = []
            for a in data["annotations"]:
                if a["image_id"] != im["id"] or a.get("iscrowd") or not a.get("num_keypoints", 1):
                    continue
                raw = np.array(a["keypoints"], np.float64).reshape(-1, 3)
                kp = np.zeros((17, 3))
                for j, c in enumerate(mapping):
                    if c >= 0 and raw[j, 2] > 0:
                        kp[c] = (raw[j, 0], raw[j, 1], 2)
                if not (kp[:, 2] > 0).any():
                    continue
                x, y, w, h = a["bbox"]
                persons.append(Annotated(kp, float(a.get("area") or w * h), (x, y, x + w, y + h)))
            photos.append(Photo(set_name, EVAL2D / folder / im["file_name"], persons))
    records = json.loads((EVAL2D / "mpii" / "test_mpii.json").read_text())
    by_image: dict[str, list[np.ndarray]] = {}
    for r in records:
        joints = np.concatenate([np.array(r["joints"], np.float64), np.array(r["joints_vis"], np.float64)[:, None]], 1)
        by_image.setdefault(r["image"], []).append(joints)
    photos += [Photo("mpii", EVAL2D / "mpii" / name, [], people) for name, people in sorted(by_image.items())]
    return photos


def oks(pred: np.ndarray, truth: Annotated) -> float:
    """COCO's object keypoint similarity over the joints the annotation labels."""
    labelled = truth.keypoints[:, 2] > 0
    d2 = np.sum(np.square(pred[labelled, :2] - truth.keypoints[labelled, :2]), axis=1)
    k2 = np.square(2 * COCO_SIGMAS[labelled])
    return float(np.mean(np.exp(-d2 / (2 * max(truth.area, 1.0) * k2))))


def match_by_oks(preds: list[np.ndarray], truths: list[Annotated]) -> list[float]:
    """Per annotated person, the OKS of the prediction matched to them (greedy, best pair first, each
    prediction once); 0 for a person left without one."""
    pairs = sorted(((oks(p, t), i, j) for j, p in enumerate(preds) for i, t in enumerate(truths)), reverse=True)
    got = [0.0] * len(truths)
    used_t, used_p = set(), set()
    for value, i, j in pairs:
        if i in used_t or j in used_p:
            continue
        used_t.add(i)
        used_p.add(j)
        got[i] = value
    return got


def pckh(preds: list[np.ndarray], person: np.ndarray) -> tuple[int, int]:
    """(joints within half the head size, joints counted) for one MPII person, with the prediction
    nearest the annotation."""
    head = float(np.linalg.norm(person[MPII_UPPER_NECK, :2] - person[MPII_HEAD_TOP, :2]))
    pairs = [(m, c) for m, c in enumerate(MPII_TO_COCO) if c >= 0 and person[m, 2] > 0]
    if not pairs:
        return 0, 0
    best = 0
    for p in preds:
        hits = sum(float(np.linalg.norm(p[c, :2] - person[m, :2])) <= PCKH_THRESHOLD * head for m, c in pairs)
        best = max(best, hits)
    return best, len(pairs)


def coco_ap(photos: list[Photo], predictions: dict[Path, list[tuple[np.ndarray, float]]]) -> float:
    """COCO keypoint AP (pycocotools) of the predictions over the photos' annotated persons."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for image_id, photo in enumerate(photos, start=1):
        images.append({"id": image_id, "file_name": photo.path.name})
        for t in photo.persons:
            x0, y0, x1, y1 = t.box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                "area": t.area, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "keypoints": t.keypoints.ravel().tolist(),
                                "num_keypoints": int((t.keypoints[:, 2] > 0).sum())})
        for kp, score in predictions.get(photo.path, []):
            out = kp.copy()
            out[:, 2] = 1
            results.append({"image_id": image_id, "category_id": 1, "keypoints": out.ravel().tolist(), "score": score})
    if not annotations or not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"info": {}, "images": images, "annotations": annotations,
                      "categories": [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)]}]}
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluation = COCOeval(gt, dt, "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def photo_segment(path: Path, working_size: int):
    from services.decoder.segments import decode_segment
    return decode_segment(str(path), 0, 1, working_size)


def predictions_of(poses) -> list[tuple[np.ndarray, float]]:
    """(COCO-17 [17, 3] original pixels, score) of every person of a one-frame result; the score is
    the person's times the mean joint score, as COCO's evaluation ranks detections."""
    out = []
    for frame in poses.frames:
        for p in frame.persons:
            kp = from_proto(p.coco17).reshape(17, 3).astype(np.float64)
            out.append((kp, float(p.score * kp[:, 2].mean())))
    return out


def report(name: str, photos: list[Photo], predictions: dict[Path, list[tuple[np.ndarray, float]]],
           seconds: float) -> None:
    print(f"{name}:")
    coco_sets = [s for s in COCO_SETS]
    overall_oks: list[float] = []
    for set_name in coco_sets:
        chosen = [p for p in photos if p.set_name == set_name]
        values = [v for p in chosen for v in match_by_oks([kp for kp, _ in predictions.get(p.path, [])], p.persons)]
        overall_oks += values
        matched = sum(v >= MATCH_OKS for v in values)
        print(f"  {set_name:<12} persons matched at OKS >= 0.5: {matched:>2}/{len(values):<2}  mean OKS "
              f"{np.mean(values) if values else 0:.3f}  AP {coco_ap(chosen, predictions):.3f}")
    coco_photos = [p for p in photos if p.set_name in COCO_SETS]
    matched = sum(v >= MATCH_OKS for v in overall_oks)
    print(f"  {'overall':<12} persons matched at OKS >= 0.5: {matched:>2}/{len(overall_oks):<2}  mean OKS "
          f"{np.mean(overall_oks):.3f}  AP {coco_ap(coco_photos, predictions):.3f}")
    hits = total = 0
    for p in photos:
        if p.set_name == "mpii":
            for person in p.mpii:
                h, n = pckh([kp for kp, _ in predictions.get(p.path, [])], person)
                hits, total = hits + h, total + n
    mpii_persons = sum(len(p.mpii) for p in photos if p.set_name == "mpii")
    print(f"  {'mpii':<12} PCKh@0.5 {hits / max(total, 1):.3f} ({hits}/{total} joints of {mpii_persons} persons)")
    print(f"  {len(photos)} photos in {seconds:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="run the model folders in this process, not via Triton")
    parser.add_argument("--max-persons", type=int, default=0, help="persons per photo (0: HPE3D_MAX_PERSONS' default)")
    parser.add_argument("--working-size", type=int, default=0, help="long side of the decoded frame (0: the default)")
    parser.add_argument("--paths", default="people,blazepose")
    parser.add_argument("--topdown", action="append", default=[], metavar="FOLDER",
                        help="an exported top-down model folder to measure on the same boxes (repeatable)")
    args = parser.parse_args(argv)
    missing = [f for f in args.topdown if not (Path(f).expanduser() / "config.pbtxt").is_file()]
    if missing:
        parser.error(f"not an exported model folder (no config.pbtxt): {', '.join(missing)}; "
                     "make one with `hpe3d models export NAME --weights FILE --repository DIR`")
    if not EVAL2D.is_dir():
        print(f"skipped: {EVAL2D} is not present (development data beside the checkout)")
        return 0
    from services.common.settings import Settings
    from services.pose2d.estimator import EstimatorOptions
    from services.pose2d.keypoint_followers import BlazePoseFollower
    from services.pose2d.people import PeopleOptions, estimate_segment_people
    from services.pose2d.segment import estimate_segment

    defaults = Settings()
    max_persons = args.max_persons or defaults.max_persons
    working = args.working_size or defaults.working_size
    photos = load_photos()
    annotated = sum(len(p.persons) for p in photos) + sum(len(p.mpii) for p in photos if p.mpii)
    print(f"{len(photos)} photos, {annotated} annotated persons; max_persons {max_persons}, working size {working}, "
          f"models {'in this process' if args.local else 'served by the Triton host'}", flush=True)
    segments = {p.path: photo_segment(p.path, working) for p in photos}

    with contextlib.ExitStack() as stack:
        if args.local:
            from bench.local_models import LocalBlazePose, LocalPersonDetector
            blazepose, detector = LocalBlazePose(), LocalPersonDetector()
        else:
            from hpe3d_cli.local_stack import LocalStack
            from services.pose2d.client import TritonBlazePose
            from services.pose2d.person_detector import TritonPersonDetector
            served = stack.enter_context(LocalStack(workdir=Path(stack.enter_context(tempfile.TemporaryDirectory())),
                                                    components=("triton",)))
            blazepose = TritonBlazePose(served.settings.triton_url)
            detector = TritonPersonDetector(served.settings.triton_url)
            stack.callback(blazepose.close)
            stack.callback(detector.close)
        runs = {
            "people": ("the stage: person detector + BlazePose landmarks",
                       lambda seg: estimate_segment_people(seg, detector, BlazePoseFollower(blazepose),
                                                           PeopleOptions(max_persons=max_persons))),
            "blazepose": ("former path: BlazePose's own detector + landmarks",
                          lambda seg: estimate_segment(seg, blazepose, EstimatorOptions(max_persons=max_persons))),
        }
        from bench.local_models import LocalTopDown
        from services.pose2d.keypoint_followers import TopDownFollower

        def topdown_run(folder: Path):
            model = LocalTopDown(folder)
            return lambda seg: estimate_segment_people(seg, detector, TopDownFollower(model),
                                                       PeopleOptions(max_persons=max_persons))

        for folder in args.topdown:
            folder = Path(folder).expanduser()
            runs[f"topdown:{folder.name}"] = (f"person detector + {folder.name} on the same boxes", topdown_run(folder))
        paths = [p.strip() for p in args.paths.split(",") if p.strip()] + [f"topdown:{Path(f).name}" for f in args.topdown]
        for path in paths:
            label, run = runs[path]
            started = time.perf_counter()
            predictions = {p.path: predictions_of(run(segments[p.path])) for p in photos}
            report(f"{path} ({label})", photos, predictions, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
