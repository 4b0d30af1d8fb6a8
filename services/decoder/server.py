"""gRPC wiring of the decoder: ``Probe``, ``Decode`` and ``TrackCamera`` over ``probe_video``,
``decode_segment`` and ``track_segment_camera``."""
from __future__ import annotations

import grpc

from hpe3d.v1 import common_pb2, decoder_pb2_grpc
from services.common.cancellation import call_token
from services.common.errors import InvalidInput
from services.common.grpc_server import run_stage
from services.common.job_scope import check_job_scope
from services.common.request_options import working_size
from services.common.settings import Settings
from services.common.stage_names import DECODER
from services.common.storage import ObjectStore

from .object_cache import DownloadedVideos
from .probe import probe_video
from .segment_camera import track_segment_camera
from .segments import decode_segment


class DecoderServicer(decoder_pb2_grpc.DecoderServicer):
    def __init__(self, store: ObjectStore, settings: Settings):
        self.store = store
        self.settings = settings
        self.videos = DownloadedVideos(store)

    def Probe(self, request, context) -> common_pb2.VideoInfo:
        check_job_scope(request, context, self.store.bucket)  # the job comes from x-job-id
        if not request.video.key:
            raise InvalidInput("video.key is empty")
        return probe_video(self.videos.path_of(request.video)).to_proto()

    def Decode(self, request, context) -> common_pb2.SegmentRef:
        check_job_scope(request, context, self.store.bucket, request.job_id)
        if not request.video.key or not request.output.key:
            raise InvalidInput("video.key and output.key are required")
        cancel = call_token(context)
        path = self.videos.path_of(request.video)
        segment = decode_segment(path, request.start_frame, request.frame_count,
                                 working_size(request.working_size, self.settings), cancel)
        cancel.check()   # nothing is written for a call that has ended
        stored = self.store.put_message(request.output.key, segment)
        return common_pb2.SegmentRef(job_id=request.job_id, index=request.index, start_frame=segment.start_frame,
                                     frame_count=len(segment.jpeg), frames=stored)

    def TrackCamera(self, request, context) -> common_pb2.ObjectRef:
        check_job_scope(request, context, self.store.bucket, request.job_id)
        if not request.frames.key or not request.poses2d.key or not request.output.key:
            raise InvalidInput("frames.key, poses2d.key and output.key are required")
        if bool(request.previous_frames.key) != bool(request.previous_poses2d.key):
            raise InvalidInput("previous_frames and previous_poses2d go together")
        segment = self.store.get_message(request.frames, common_pb2.FrameSegment)
        poses = self.store.get_message(request.poses2d, common_pb2.Poses2D)
        previous = previous_poses = None
        if request.previous_frames.key:
            previous = self.store.get_message(request.previous_frames, common_pb2.FrameSegment)
            previous_poses = self.store.get_message(request.previous_poses2d, common_pb2.Poses2D)
        motion = track_segment_camera(segment, poses, previous, previous_poses)
        return self.store.put_message(request.output.key, motion)


def register(server: grpc.Server, store: ObjectStore, settings: Settings) -> DecoderServicer:
    servicer = DecoderServicer(store, settings)
    decoder_pb2_grpc.add_DecoderServicer_to_server(servicer, server)
    return servicer


def main() -> None:
    run_stage(DECODER, register)


if __name__ == "__main__":
    main()
