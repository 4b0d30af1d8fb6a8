"""Lifter3D gRPC server: wires ``Lift`` to ``video_lift.lift_frames`` and the live ``Stream`` to
``live.LiveLifter`` (the causal weights)."""
from __future__ import annotations

import queue
import sys
import threading

import grpc
import torch
from prometheus_client import Counter, Gauge

from hpe3d.v1 import common_pb2, lifter3d_pb2, lifter3d_pb2_grpc
from services.common.cancellation import CancelToken, call_token
from services.common.errors import WeightsMissing
from services.common.grpc_server import run_stage
from services.common.job_scope import check_job_scope
from services.common.live_limits import LIVE_STAGE_THREADS, StreamSlots
from services.common.settings import Settings
from services.common.stage_names import LIFTER3D
from services.common.storage import ObjectStore

from .live import LiveLifter, LiveModel, load_live_model
from .named_weights import NamedLifters
from .video_lift import Lifter, lift_frames, load_service_lifter

LIVE_STREAMS = Gauge("hpe3d_lifter3d_live_streams", "Lifter3D.Stream calls open now")
LIVE_FRAMES = Counter("hpe3d_lifter3d_live_frames_total", "Frames through Lifter3D.Stream")


class Lifter3DServicer(lifter3d_pb2_grpc.Lifter3DServicer):
    def __init__(self, store: ObjectStore, settings: Settings, lifter: Lifter,
                 live: LiveModel | WeightsMissing | None = None):
        """``live``: the causal lifter of ``Stream``, or why it could not be loaded (said to each
        live caller; batch lifting goes on without it); None loads the shipped causal weights."""
        self.store = store
        self.settings = settings
        self.lifter = lifter
        self.lifters = NamedLifters(store, lifter)  # LiftRequest.lifter_weights; "" = ``lifter``
        if live is None:
            try:
                live = load_live_model()
            except WeightsMissing as exc:
                live = exc
        self.live = live
        self.live_streams = StreamSlots("live 3D streams", on_change=LIVE_STREAMS.set)

    def _gather_frames(self, request: lifter3d_pb2.LiftRequest, cancel: CancelToken
                       ) -> tuple[list[common_pb2.FramePoses2D], list[int] | None]:
        """All 2D frames of the request and the first frame of every stored segment (None: inline only)."""
        frames = list(request.frames)
        starts = []
        for ref in cancel.each(request.segments):
            poses = self.store.get_message(ref, common_pb2.Poses2D)
            frames.extend(poses.frames)
            starts.append(poses.start_frame)
        return frames, (starts or None)

    def Lift(self, request: lifter3d_pb2.LiftRequest, context: grpc.ServicerContext):
        check_job_scope(request, context, self.store.bucket, request.job_id)
        cancel = call_token(context)
        updates: queue.Queue = queue.Queue()
        yield lifter3d_pb2.LiftUpdate(progress=common_pb2.Progress(
            stage=LIFTER3D, done=0, total=len(request.segments), message="reading 2D keypoints"))
        frames, segment_starts = self._gather_frames(request, cancel)
        lifter = self.lifters.lifter(request.lifter_weights)

        def report(done: int, total: int, message: str) -> None:
            cancel.check()   # between tracks: the lift stops once the call has ended
            updates.put(common_pb2.Progress(stage=LIFTER3D, done=done, total=total, message=message))

        outcome: dict = {}

        def work() -> None:
            try:
                outcome["poses"] = lift_frames(frames, request.width, request.height, lifter,
                                               request.min_track_frames, report, request.focal_px,
                                               request.fps, segment_starts,
                                               [self.store.get_message(ref, common_pb2.CameraMotion)
                                                for ref in request.camera_motions])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the handler thread
                outcome["error"] = exc
            finally:
                updates.put(None)

        threading.Thread(target=work, daemon=True).start()
        while (item := updates.get()) is not None:
            yield lifter3d_pb2.LiftUpdate(progress=item)
        if "error" in outcome:
            raise outcome["error"]
        reply = lifter3d_pb2.LiftReply(poses=outcome["poses"])
        cancel.check()   # nothing is written for a call that has ended
        if request.output.key:
            self.store.put_message(request.output.key, outcome["poses"])
            reply.stored.CopyFrom(self.store.ref(request.output.key))
        yield lifter3d_pb2.LiftUpdate(result=reply)


    def Stream(self, request_iterator, context):
        """2D frames in, 3D per frame out; the per-track windows live in this call and go with it."""
        if isinstance(self.live, WeightsMissing):
            raise self.live
        with self.live_streams.hold():
            lifter = None
            for frame in request_iterator:
                if lifter is None:
                    lifter = LiveLifter(self.live, frame.width, frame.height, frame.focal_px)
                reply = lifter.lift(frame.poses)
                LIVE_FRAMES.inc()
                yield reply


def register(server: grpc.Server, store: ObjectStore, settings: Settings, lifter: Lifter | None = None) -> None:
    lifter = lifter or load_service_lifter(settings.lifter_weights)
    lifter3d_pb2_grpc.add_Lifter3DServicer_to_server(Lifter3DServicer(store, settings, lifter), server)


def main() -> None:
    settings = Settings.from_env()
    if settings.lifter_threads > 0:
        torch.set_num_threads(settings.lifter_threads)
    try:
        lifter = load_service_lifter(settings.lifter_weights)
    except WeightsMissing as exc:  # say which file to supply, then stop: never serve random weights
        print(f"lifter3d: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    run_stage(LIFTER3D, lambda server, store, settings: register(server, store, settings, lifter),
              max_workers=LIVE_STAGE_THREADS)


if __name__ == "__main__":
    main()
