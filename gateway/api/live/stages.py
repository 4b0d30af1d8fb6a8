"""One live session's two gRPC streams, ``Pose2D.Stream`` then ``Lifter3D.Stream``, called in lock
step: a frame goes in, its 2D comes back, the 2D goes in, its 3D comes back. Both calls are opened
with the session and cancelled when it ends, so the stages drop the session's state at once."""
from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from hpe3d.v1 import lifter3d_pb2, pose2d_pb2

from ...jobs.stages import StageClients
from .protocol import LiveFrame


class StageStreamEnded(Exception):
    """A stage closed its stream without an error status (it was stopped)."""


@dataclass
class StageAnswer:
    pose2d: pose2d_pb2.Pose2DStreamReply
    lift: lifter3d_pb2.LiftStreamReply
    pose2d_call_ms: float     # frame sent -> its 2D back, as the gateway sees it
    lift_call_ms: float       # 2D sent -> its 3D back


class LiveStages:
    """The two open streams of one session; ``process`` one frame at a time."""

    def __init__(self, clients: StageClients, max_persons: int, focal_px: float):
        self.clients = clients
        self.max_persons = max_persons
        self.focal_px = focal_px
        self._pose2d = clients.pose2d.Stream()
        self._lift = clients.lifter3d.Stream()
        self._size: tuple[int, int] | None = None   # the frame size the lifter stream was opened with

    async def process(self, frame: LiveFrame) -> StageAnswer:
        """The 2D and 3D of ``frame``; ``grpc.aio.AioRpcError`` from a stage that failed."""
        started = time.perf_counter()
        await self._pose2d.write(pose2d_pb2.Pose2DStreamFrame(
            jpeg=frame.jpeg, frame_index=frame.index, timestamp_s=frame.capture_ms / 1000,
            max_persons=self.max_persons))
        pose2d = await self._read(self._pose2d, "pose2d")
        sent_2d = time.perf_counter()
        request = lifter3d_pb2.LiftStreamFrame(poses=pose2d.poses)
        size = (pose2d.width, pose2d.height)
        if size != self._size:
            if self._size is not None:   # the camera changed resolution: a new lifter stream for the new size
                self._lift.cancel()
                self._lift = self.clients.lifter3d.Stream()
            self._size = size
            request.width, request.height, request.focal_px = pose2d.width, pose2d.height, self.focal_px
        await self._lift.write(request)
        lift = await self._read(self._lift, "lifter3d")
        done = time.perf_counter()
        return StageAnswer(pose2d, lift, (sent_2d - started) * 1000, (done - sent_2d) * 1000)

    @staticmethod
    async def _read(call, stage: str):
        reply = await call.read()
        if reply is grpc.aio.EOF:
            raise StageStreamEnded(f"the {stage} stage ended the live stream")
        return reply

    def close(self) -> None:
        """Cancel both calls (the stages then drop the session's tracking and windows)."""
        self._pose2d.cancel()
        self._lift.cancel()
