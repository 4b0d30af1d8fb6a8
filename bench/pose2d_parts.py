"""Where a segment's time goes in the 2D stage's code: ``bench/pose2d.py --parts``.

Runs ``people.estimate_segment_people`` on the given models with each part wrapped in a wall-clock
timer, summed per thread (``MainThread``: the frame loop; ``detector``: the person detector's thread;
``jpeg``: the JPEG decoding thread), and prints ms per frame of each part with its call count. The
parts nest: ``landmark model calls`` lies inside ``keypoint followers``, which lies inside
``frame loop``; the frame loop's waits for a future are its waits for a detector run it needed or
for a decoded frame (``waits for a decoded frame`` is the latter alone). The models' calls are timed
too. The wrappers are removed afterwards.
"""
from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager

import services.pose2d.keypoint_followers as keypoint_followers
import services.pose2d.people as people
import services.pose2d.person_detector as person_detector
import services.pose2d.segment as segment

#: (object, attribute, label) of every timed part
PARTS = (
    (people.PeopleFollower, "update", "frame loop (PeopleFollower.update)"),
    (keypoint_followers.BlazePoseFollower, "find", "keypoint followers (find)"),
    (keypoint_followers, "landmark_input", "crops (warpAffine to 256x256)"),
    (keypoint_followers, "mask_outside", "crop masks (crowded persons)"),
    (keypoint_followers, "decode_landmarks", "landmark decoding (+ heatmap refinement)"),
    (people.PersonTracker, "update", "tracker"),
    (people, "detect_persons", "detector runs (letterbox + model + decode)"),
    (person_detector, "letterbox", "detector letterbox"),
    (segment, "_decode", "JPEG decode"),
    (segment.DecodedFrames, "__getitem__", "waits for a decoded frame"),
)


@contextmanager
def timed_parts():
    """Wraps ``PARTS`` for the duration; yields (seconds, calls) by (thread, label) and the wrapper, for
    timing more callables the same way."""
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    calls: Counter = Counter()

    def wrap(function, label):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                key = (threading.current_thread().name.split("_")[0], label)
                seconds[key] += time.perf_counter() - started
                calls[key] += 1
        return timed

    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in PARTS]
    try:
        for (owner, name, label), (_, _, function) in zip(PARTS, originals):
            setattr(owner, name, wrap(function, label))
        yield seconds, calls, wrap
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def print_parts(segment_msg, detector, blazepose, options, heatmap: bool = True) -> None:
    """Runs the segment once to warm up, then once timed, and prints the parts."""
    from concurrent.futures import Future

    from services.pose2d.keypoint_followers import BlazePoseFollower

    people.estimate_segment_people(segment_msg, detector, BlazePoseFollower(blazepose, heatmap), options)
    with timed_parts() as (seconds, calls, wrap):
        result = Future.result
        blazepose.landmarks = wrap(blazepose.landmarks, "landmark model calls")
        detector.infer = wrap(detector.infer, "detector model calls")
        Future.result = wrap(result, "waits for the detector or a decoded frame")
        follower = BlazePoseFollower(blazepose, heatmap)
        started = time.perf_counter()
        try:
            poses = people.estimate_segment_people(segment_msg, detector, follower, options)
        finally:
            wall = time.perf_counter() - started
            Future.result = result
            del blazepose.landmarks, detector.infer
    frames = len(poses.frames)
    persons = sum(len(f.persons) for f in poses.frames)
    print(f"parts of {frames} frames ({frames / wall:.1f} frames/s, {persons / frames:.2f} persons per frame, "
          f"{follower.crops} landmark crops): wall ms per frame, by thread")
    for thread, label in sorted(seconds, key=lambda k: -seconds[k]):
        print(f"  {thread:10s} {label:45s} {seconds[(thread, label)] * 1e3 / frames:7.2f}  "
              f"({calls[(thread, label)]} calls)")
