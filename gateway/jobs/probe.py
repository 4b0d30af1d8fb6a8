"""What ``Decoder.Probe``'s answer means for a job: the video facts its manifest keeps, and the
limits an upload must meet to become a job. The API applies it at submission (so an unusable
upload gets 422 at once), the worker again when it runs the job."""
from __future__ import annotations

from hpe3d.v1 import common_pb2
from services.common.settings import Settings
from services.common.stage_names import DECODER

from .job_errors import JobFailed
from .manifest import JobError, JobManifest, VideoSummary


def video_summary(info: common_pb2.VideoInfo) -> VideoSummary:
    return VideoSummary(width=info.width, height=info.height, fps=info.fps, frame_count=info.frame_count,
                        duration_s=info.duration_s, rotation_deg=info.rotation_deg, codec=info.codec,
                        variable_frame_rate=info.variable_frame_rate, still_image=info.still_image,
                        announced_frame_count=info.announced_frame_count)


def apply_probe(job: JobManifest, info: common_pb2.VideoInfo, settings: Settings) -> None:
    """Record the probe's facts and warnings in ``job``; ``JobFailed`` when the upload cannot be a
    job (too long, no decodable frame)."""
    job.video = video_summary(info)
    job.warnings = list(info.warnings)
    if info.duration_s > settings.max_duration_s:
        raise JobFailed(JobError(stage=DECODER, code="VIDEO_TOO_LONG", message=(
            f"video is {info.duration_s:.1f} s long; the limit is {settings.max_duration_s:.0f} s")))
    if info.frame_count <= 0:
        raise JobFailed(JobError(stage=DECODER, code="INVALID_ARGUMENT", message="the video holds no decodable frames"))
