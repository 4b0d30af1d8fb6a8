"""gRPC wiring of the pose2d stage: ``Pose2D.Estimate`` over the model catalog (every person the
person detector finds, with BlazePose or a top-down model chosen by ``pose_model``),
``Pose2D.ListModels`` and the live ``Pose2D.Stream`` (``live.py``), models on Triton.

    python -m services.pose2d.server      # HPE3D_TRITON_URL, HPE3D_S3_*, HPE3D_GRPC_PORT, ...

Idempotent on (job, segment): the result is a pure function of the stored segment, and when the
``output`` object already exists (a retried call whose first reply was lost) it is returned as
stored instead of being computed again.
"""
from __future__ import annotations

import logging
import time

import grpc
from prometheus_client import Counter, Gauge, Histogram

from hpe3d.v1 import common_pb2, pose2d_pb2, pose2d_pb2_grpc
from services.common.cancellation import call_token
from services.common.errors import InvalidInput
from services.common.grpc_server import run_stage
from services.common.job_scope import check_job_scope
from services.common.live_limits import LIVE_STAGE_THREADS, StreamSlots
from services.common.pose_models import (DEFAULT_POSE_MODEL, KNOWN_POSE_MODELS, TOPDOWN_MODELS, TRITON_MODELS,
                                         how_to_supply, unknown_model_message)
from services.common.request_options import MAX_PERSONS_LIMIT, persons_per_frame
from services.common.settings import Settings
from services.common.stage_names import POSE2D
from services.common.storage import ObjectStore

from .catalog import PoseModelCatalog
from .client import BlazePoseModels, TritonBlazePose
from .live import LivePoseStream
from .person_detector import TritonPersonDetector
from .segment import frames_with_person
from .topdown_client import TritonTopDown, ready_models

log = logging.getLogger(__name__)

FRAMES = Counter("hpe3d_pose2d_frames_total", "Frames through Pose2D.Estimate")
PERSONS = Counter("hpe3d_pose2d_persons_total", "Persons found, summed over frames")
FRAME_SECONDS = Histogram("hpe3d_pose2d_segment_seconds_per_frame", "Estimate time per frame of a segment",
                          buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1))
LIVE_STREAMS = Gauge("hpe3d_pose2d_live_streams", "Pose2D.Stream calls open now")
LIVE_FRAMES = Counter("hpe3d_pose2d_live_frames_total", "Frames through Pose2D.Stream")


class Pose2DServicer(pose2d_pb2_grpc.Pose2DServicer):
    def __init__(self, store: ObjectStore, settings: Settings, models: BlazePoseModels | None = None,
                 catalog: PoseModelCatalog | None = None):
        self.store = store
        self.settings = settings
        self.models = models or TritonBlazePose(settings.triton_url)
        self.catalog = catalog or PoseModelCatalog(
            self.models, lambda name: TritonTopDown(settings.triton_url, name),
            lambda: ready_models(settings.triton_url, TRITON_MODELS), flip_test=settings.topdown_flip_test,
            detector_factory=lambda: TritonPersonDetector(settings.triton_url))
        self.live_streams = StreamSlots("live 2D streams", on_change=LIVE_STREAMS.set)

    def Estimate(self, request: pose2d_pb2.EstimateRequest, context) -> pose2d_pb2.EstimateReply:
        check_job_scope(request, context, self.store.bucket, request.segment.job_id)
        if not request.segment.frames.key:
            raise InvalidInput("segment.frames.key is empty")
        if not 0 <= request.max_persons <= MAX_PERSONS_LIMIT:
            raise InvalidInput(f"max_persons must be 0..{MAX_PERSONS_LIMIT}, got {request.max_persons}")
        if request.pose_model and request.pose_model not in KNOWN_POSE_MODELS:
            raise InvalidInput(unknown_model_message(request.pose_model))
        if request.output.key and self.store.exists(request.output):
            poses = self.store.get_message(request.output, common_pb2.Poses2D)
            log.info("segment %d: result already stored at %s, returned as is", request.segment.index,
                     request.output.key)
            return pose2d_pb2.EstimateReply(poses=poses, stored=self.store.ref(request.output.key),
                                            frames_with_person=frames_with_person(poses))
        cancel = call_token(context)
        segment = self.store.get_message(request.segment.frames, common_pb2.FrameSegment)
        started = time.perf_counter()
        poses = self.catalog.estimate(segment, request.pose_model, persons_per_frame(request.max_persons, self.settings),
                                      cancel)
        elapsed = time.perf_counter() - started
        found = frames_with_person(poses)
        if poses.frames:
            FRAMES.inc(len(poses.frames))
            PERSONS.inc(sum(len(f.persons) for f in poses.frames))
            FRAME_SECONDS.observe(elapsed / len(poses.frames))
        log.info("segment %d (%s): %d frames, %d with a person, %.1f frames/s", request.segment.index,
                 request.pose_model or DEFAULT_POSE_MODEL, len(poses.frames), found,
                 len(poses.frames) / elapsed if elapsed > 0 else 0.0)
        reply = pose2d_pb2.EstimateReply(poses=poses, frames_with_person=found)
        cancel.check()   # nothing is written for a call that has ended
        if request.output.key:
            reply.stored.CopyFrom(self.store.put_message(request.output.key, poses))
        return reply

    def ListModels(self, request: pose2d_pb2.ListModelsRequest, context) -> pose2d_pb2.ListModelsReply:
        offered = self.catalog.offered()
        reply = pose2d_pb2.ListModelsReply(models=[
            pose2d_pb2.PoseModelInfo(name=m.name, kind=m.kind, input_width=m.input_width,
                                     input_height=m.input_height, triton_models=list(m.triton_models),
                                     is_default=m.name == DEFAULT_POSE_MODEL) for m in offered])
        loaded = {m.name for m in offered}
        reply.not_loaded.extend(pose2d_pb2.MissingPoseModel(name=name, checkpoint=TOPDOWN_MODELS[name].checkpoint,
                                                            how=how_to_supply(name))
                                for name in TOPDOWN_MODELS if name not in loaded)
        return reply


    def Stream(self, request_iterator, context):
        """Live frames in, their people out, one reply per frame; the tracking state lives in this
        call and goes with it (the client closing the stream or cancelling it ends the loop)."""
        with self.live_streams.hold():
            stream = None
            try:
                for frame in request_iterator:
                    if stream is None:
                        if not 0 <= frame.max_persons <= MAX_PERSONS_LIMIT:
                            raise InvalidInput(f"max_persons must be 0..{MAX_PERSONS_LIMIT}, got {frame.max_persons}")
                        stream = LivePoseStream(self.catalog.blazepose, self.catalog.detector(),
                                                persons_per_frame(frame.max_persons, self.settings))
                    reply = stream.estimate(frame)
                    LIVE_FRAMES.inc()
                    yield reply
            finally:
                if stream is not None:
                    stream.close()


def register(server: grpc.Server, store: ObjectStore, settings: Settings,
             models: BlazePoseModels | None = None) -> Pose2DServicer:
    servicer = Pose2DServicer(store, settings, models)
    pose2d_pb2_grpc.add_Pose2DServicer_to_server(servicer, server)
    return servicer


def main() -> None:
    run_stage(POSE2D, register, max_workers=LIVE_STAGE_THREADS)


if __name__ == "__main__":
    main()
