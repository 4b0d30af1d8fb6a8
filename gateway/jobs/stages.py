"""gRPC clients of the four stages: one ``grpc.aio`` channel per stage (balanced over its replicas),
per worker process (the API uses the decoder's, to probe uploads)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hpe3d.v1 import decoder_pb2_grpc, lifter3d_pb2_grpc, pose2d_pb2_grpc, renderer_pb2_grpc
from services.common.grpc_server import CLIENT_OPTIONS, client_target
from services.common.settings import Settings
from services.common.stage_auth import aio_token_interceptors
from services.common.stage_names import DECODER, LIFTER3D, POSE2D, RENDERER, STAGE_SERVICES


@dataclass
class StageClients:
    """Stubs for the four stages plus the channels behind them (closed by ``close``)."""

    decoder: decoder_pb2_grpc.DecoderStub
    pose2d: pose2d_pb2_grpc.Pose2DStub
    lifter3d: lifter3d_pb2_grpc.Lifter3DStub
    renderer: renderer_pb2_grpc.RendererStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def from_settings(cls, settings: Settings) -> "StageClients":
        """Open (lazily connecting) channels to the addresses in ``settings``; call inside a loop."""
        addrs = {DECODER: settings.decoder_addr, POSE2D: settings.pose2d_addr,
                 LIFTER3D: settings.lifter3d_addr, RENDERER: settings.renderer_addr}
        # every call carries the stage token (HPE3D_STAGE_TOKEN) when one is set
        channels = {name: grpc.aio.insecure_channel(client_target(addr), options=CLIENT_OPTIONS,
                                                     interceptors=aio_token_interceptors(settings.stage_token))
                    for name, addr in addrs.items()}
        return cls(decoder=decoder_pb2_grpc.DecoderStub(channels[DECODER]),
                   pose2d=pose2d_pb2_grpc.Pose2DStub(channels[POSE2D]),
                   lifter3d=lifter3d_pb2_grpc.Lifter3DStub(channels[LIFTER3D]),
                   renderer=renderer_pb2_grpc.RendererStub(channels[RENDERER]),
                   channels=channels)

    async def serving(self, stage: str, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Whether ``stage`` answers gRPC health with SERVING, and a short reason when not."""
        stub = health_pb2_grpc.HealthStub(self.channels[stage])
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=STAGE_SERVICES[stage]), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            return False, f"{exc.code().name}: {exc.details() or ''}".strip()
        except asyncio.TimeoutError:
            return False, "health check timed out"
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return False, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return True, "SERVING"

    async def close(self) -> None:
        for ch in self.channels.values():
            await ch.close()
