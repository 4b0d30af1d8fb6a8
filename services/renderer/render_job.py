"""One Render call as a plain generator: read inputs from the store, write the artefacts.

Yields ``(done, total, message)`` progress tuples, then a list of ``Artifact`` messages. Every
artefact is written under ``output_prefix`` with a fixed name, so a retry overwrites the same
objects (idempotent).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from hpe3d.v1 import common_pb2, renderer_pb2
from services.common.errors import InvalidInput
from services.common.storage import ObjectStore

from .exports import joint_angles_csv, joints3d_csv, poses_json
from .pose_data import PoseTimeline
from .video import render_video

EXPORTS = (("poses.json", "application/json", poses_json),
           ("joints3d.csv", "text/csv", joints3d_csv),
           ("joint_angles.csv", "text/csv", joint_angles_csv))


def render_job(store: ObjectStore, request: renderer_pb2.RenderRequest) -> Iterator[tuple | list]:
    """Run ``request`` (see renderer.proto). Raises ``InvalidInput`` for a request missing what it
    needs and ``ObjectNotFound`` when a referenced object is absent."""
    info = request.video_info
    if info.frame_count <= 0 or info.width <= 0 or info.height <= 0:
        raise InvalidInput("video_info must come from Decoder.Probe (frame_count, width, height > 0)")
    if not request.output_prefix:
        raise InvalidInput("output_prefix is empty")
    if request.bucket not in ("", store.bucket):
        raise InvalidInput(f"bucket must be {store.bucket!r} (this server's bucket)")
    prefix = request.output_prefix if request.output_prefix.endswith("/") else request.output_prefix + "/"
    poses2d = [store.get_message(ref, common_pb2.Poses2D) for ref in request.poses2d]
    poses3d = store.get_message(request.poses3d, common_pb2.Poses3D) if request.poses3d.key else None
    timeline = PoseTimeline(poses2d, poses3d)
    total = info.frame_count + len(EXPORTS)
    artifacts = []
    if not request.skip_video:
        if not request.video.key:
            raise InvalidInput("video.key is empty (set skip_video to write only the exports)")
        with tempfile.TemporaryDirectory(prefix="hpe3d-render-") as tmp:
            source, target = os.path.join(tmp, "input"), os.path.join(tmp, "render.mp4")
            store.get_file(request.video, source)
            for done in render_video(source, info, timeline, target):
                yield done, total, "rendering video"
            artifacts.append(_artifact(store, store.put_file(prefix + "render.mp4", target, "video/mp4"),
                                       "render.mp4", "video/mp4", os.path.getsize(target)))
    for i, (name, content_type, build) in enumerate(EXPORTS):
        data = build(info, timeline)
        artifacts.append(_artifact(store, store.put_bytes(prefix + name, data, content_type), name,
                                   content_type, len(data)))
        yield info.frame_count + i + 1, total, f"wrote {name}"
    yield artifacts


def _artifact(store, ref, name, content_type, size) -> renderer_pb2.Artifact:
    return renderer_pb2.Artifact(name=name, ref=ref, content_type=content_type, size_bytes=size)
