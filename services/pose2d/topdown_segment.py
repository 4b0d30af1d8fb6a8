"""One frame segment through a top-down model: ``estimate_segment_topdown(FrameSegment) -> Poses2D``.

1. Every frame's people: the BlazePose detector (``person_boxes.detect_people``, batched over the
   whole segment), track ids by box overlap (``person_boxes.assign_tracks``).
2. Every person of every frame cut out (``topdown.cut_crop``), with its mirror image when
   ``flip_test`` is on, and sent to the model in one call (the client splits it into requests of at
   most the model's ``max_batch_size``, several in flight, for Triton's dynamic batcher).
3. Heatmaps decoded with sub-pixel refinement, mapped back to the frame and scaled to the original
   video's pixels (``source_width / width``).

Per person (``Person2D``): ``coco17`` [17, 3] x, y in original-frame pixels and the heatmap peak as
the score; ``box`` the detector's body box in original pixels, clipped to the frame; ``score`` the
detector's score. ``blazepose33`` stays empty (the model has no such landmarks).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hpe3d.v1 import common_pb2
from services.common.cancellation import NEVER, CancelToken
from services.common.arrays import to_proto
from services.pose2d.client import BlazePoseModels
from services.pose2d.person_boxes import PersonBox, assign_tracks, detect_people
from services.pose2d.segment import box_to_proto, decode_jpegs, start_poses
from services.pose2d.topdown import crop_box, cut_crop, flip_back, keypoints_in_frame
from services.pose2d.topdown_client import HeatmapModel


@dataclass(frozen=True)
class TopDownOptions:
    max_persons: int = 2
    flip_test: bool = True            # also run the mirrored crops and average (as the official test)
    search_tiles: bool = True         # detector also on square tiles of a wide frame (small people)
    min_detection_score: float = 0.5


def crops_of(frames_bgr: list[np.ndarray], people: list[list[PersonBox]], width: int, height: int):
    """All RGB crops ``[N, height, width, 3]`` of BGR frames and their regions, frame by frame,
    person by person (only the crops are converted to RGB, not the frames)."""
    regions = [crop_box(p.box, width / height) for persons in people for p in persons]
    crops = np.empty((len(regions), height, width, 3), np.uint8)
    k = 0
    for frame, persons in zip(frames_bgr, people):
        for _ in persons:
            cut_crop(frame, regions[k], width, height, out=crops[k])
            cv2.cvtColor(crops[k], cv2.COLOR_BGR2RGB, dst=crops[k])
            k += 1
    return crops, regions


def topdown_keypoints(frames_bgr: list[np.ndarray], people: list[list[PersonBox]], model: HeatmapModel,
                      flip_test: bool = True) -> list[np.ndarray]:
    """COCO-17 ``[17, 3]`` (frame pixels, score) of every person of every BGR frame, in order."""
    info = model.info
    crops, regions = crops_of(frames_bgr, people, info.width, info.height)
    if not regions:
        return []
    batch = np.concatenate([crops, crops[:, :, ::-1]]) if flip_test else crops
    heatmaps = model.heatmaps(batch)
    if flip_test:
        heatmaps = 0.5 * (heatmaps[:len(regions)] + flip_back(heatmaps[len(regions):]))
    return list(keypoints_in_frame(heatmaps, regions))


def estimate_segment_topdown(segment: common_pb2.FrameSegment, detector: BlazePoseModels, model: HeatmapModel,
                             options: TopDownOptions | None = None, cancel: CancelToken = NEVER) -> common_pb2.Poses2D:
    """The 2D poses of every frame of ``segment`` by a top-down model (frame indices are the video's);
    ``CallCancelled`` (checked between decoding, detection and the keypoint model) once ``cancel`` is."""
    options = options or TopDownOptions()
    result, source_w, source_h = start_poses(segment)
    if not segment.jpeg:
        return result
    frames = list(cancel.each(decode_jpegs(segment.jpeg)))
    people = assign_tracks(detect_people(frames, detector, options.max_persons, options.min_detection_score,
                                         options.search_tiles))
    cancel.check()
    keypoints = iter(topdown_keypoints(frames, people, model, options.flip_test))
    cancel.check()
    for i, (frame, persons) in enumerate(zip(frames, people)):
        sx, sy = source_w / frame.shape[1], source_h / frame.shape[0]
        timestamp = segment.timestamps_s[i] if i < len(segment.timestamps_s) else 0.0
        out = []
        for person in persons:
            kp = next(keypoints).copy()
            kp[:, 0] *= sx
            kp[:, 1] *= sy
            box = box_to_proto(person.box, sx, sy, source_w, source_h)
            out.append(common_pb2.Person2D(track_id=person.track_id, box=box, score=person.score,
                                           coco17=to_proto(kp)))
        result.frames.append(common_pb2.FramePoses2D(frame_index=segment.start_frame + i, timestamp_s=timestamp,
                                                     persons=out))
    return result
