"""Splitting a video's frames into the fixed-size segments that the decoder and pose2d process."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentPlan:
    index: int
    start_frame: int
    frame_count: int


def plan_segments(frame_count: int, segment_frames: int) -> list[SegmentPlan]:
    """Consecutive segments of ``segment_frames`` frames covering ``[0, frame_count)``; the last
    one holds the remainder. No segments for an empty video."""
    if segment_frames <= 0:
        raise ValueError(f"segment_frames must be positive, got {segment_frames}")
    return [SegmentPlan(index=i, start_frame=start, frame_count=min(segment_frames, frame_count - start))
            for i, start in enumerate(range(0, max(frame_count, 0), segment_frames))]
