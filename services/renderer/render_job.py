"""One Render call as a plain generator: read inputs from the store, write the artefacts.

Yields ``(done, total, message)`` progress tuples, then a list of ``Artifact`` messages. Every
artefact is written under ``output_prefix`` with a fixed name, so a retry overwrites the same
objects (idempotent).

Artefacts: ``render.mp4`` (a video) or ``render.png`` (a still image, ``VideoInfo.still_image``) unless
``skip_video``; ``thumbnail.jpg`` whenever the request names the video; ``poses.json``, ``joints3d.csv``, ``joint_angles.csv`` and one
``person_<track>.bvh`` per lifted track.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from hpe3d.v1 import common_pb2, renderer_pb2
from services.common.cancellation import NEVER, CancelToken
from services.common.errors import InvalidInput
from services.common.storage import ObjectStore

from .exports import bvh_files, joint_angles_csv, joints3d_csv, poses_json
from .pose_data import PoseTimeline
from .video import compose_at, render_still, render_video, thumbnail_frame, thumbnail_jpeg

EXPORTS = (("poses.json", "application/json", poses_json),
           ("joints3d.csv", "text/csv", joints3d_csv),
           ("joint_angles.csv", "text/csv", joint_angles_csv))
BVH_CONTENT_TYPE = "application/octet-stream"  # no registered type; readers go by the .bvh name


def render_job(store: ObjectStore, request: renderer_pb2.RenderRequest,
               cancel: CancelToken = NEVER) -> Iterator[tuple | list]:
    """Run ``request`` (see renderer.proto). Raises ``InvalidInput`` for a request missing what it
    needs, ``ObjectNotFound`` when a referenced object is absent and ``CallCancelled`` (checked
    between frames and before every write) once ``cancel`` is. The server has already checked
    that every key and ``bucket`` belong to the call's job in this store (``check_job_scope``)."""
    info = request.video_info
    if info.frame_count <= 0 or info.width <= 0 or info.height <= 0:
        raise InvalidInput("video_info must come from Decoder.Probe (frame_count, width, height > 0)")
    if not request.output_prefix:
        raise InvalidInput("output_prefix is empty")
    if not request.video.key and not request.skip_video:
        raise InvalidInput("video.key is empty (set skip_video to write only the exports)")
    prefix = request.output_prefix if request.output_prefix.endswith("/") else request.output_prefix + "/"
    poses2d = [store.get_message(ref, common_pb2.Poses2D) for ref in request.poses2d]
    poses3d = store.get_message(request.poses3d, common_pb2.Poses3D) if request.poses3d.key else None
    timeline = PoseTimeline(poses2d, poses3d)
    bvhs = bvh_files(info, timeline)
    pictures = 0 if request.skip_video else info.frame_count
    total = pictures + bool(request.video.key) + len(EXPORTS) + len(bvhs)
    artifacts = []

    def put(name: str, data: bytes, content_type: str) -> None:
        cancel.check()
        ref = store.put_bytes(prefix + name, data, content_type)
        artifacts.append(renderer_pb2.Artifact(name=name, ref=ref, content_type=content_type, size_bytes=len(data)))

    thumbnail = None  # stays None only for skip_video without a video: exports alone
    with tempfile.TemporaryDirectory(prefix="hpe3d-render-") as tmp:
        source = os.path.join(tmp, "input")
        if request.video.key:
            store.get_file(request.video, source)
        if not request.video.key:
            yield pictures, total, "no video: exports only"
        elif info.still_image and not request.skip_video:
            png, thumbnail = render_still(source, info, timeline)
            put("render.png", png, "image/png")
            yield pictures, total, "rendered image"
        elif not request.skip_video:
            target, thumbs = os.path.join(tmp, "render.mp4"), []
            for done in cancel.each(render_video(source, info, timeline, target, thumbnail=thumbs)):
                yield done, total, "rendering video"
            cancel.check()
            ref = store.put_file(prefix + "render.mp4", target, "video/mp4")
            artifacts.append(renderer_pb2.Artifact(name="render.mp4", ref=ref, content_type="video/mp4",
                                                   size_bytes=os.path.getsize(target)))
            thumbnail = thumbs[0] if thumbs else thumbnail_jpeg(
                compose_at(source, info, timeline, thumbnail_frame(info, timeline)))
        else:
            thumbnail = thumbnail_jpeg(compose_at(source, info, timeline, thumbnail_frame(info, timeline)))
    done = pictures
    if thumbnail is not None:
        put("thumbnail.jpg", thumbnail, "image/jpeg")
        done += 1
        yield done, total, "wrote thumbnail.jpg"
    for name, content_type, build in EXPORTS:
        put(name, build(info, timeline), content_type)
        done += 1
        yield done, total, f"wrote {name}"
    for name, data in bvhs:
        put(name, data, BVH_CONTENT_TYPE)
        done += 1
        yield done, total, f"wrote {name}"
    yield artifacts
