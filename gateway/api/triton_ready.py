"""Asking Triton (KServe v2 gRPC protocol) whether the server and given models are ready.

Only two tiny calls of ``inference.GRPCInferenceService`` are needed (ServerReady, ModelReady), so
their four messages are described here with protobuf's descriptor API instead of shipping the
whole Triton client in the API image. Field numbers are those of Triton's ``grpc_service.proto``.
"""
from __future__ import annotations

import asyncio
from functools import lru_cache

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "/inference.GRPCInferenceService/"


@lru_cache(maxsize=1)
def _messages() -> dict[str, type]:
    proto = descriptor_pb2.FileDescriptorProto(name="hpe3d_triton_ready.proto", package="inference", syntax="proto3")
    proto.message_type.add(name="ServerReadyRequest")
    reply = proto.message_type.add(name="ServerReadyResponse")
    reply.field.add(name="ready", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    request = proto.message_type.add(name="ModelReadyRequest")
    for number, name in ((1, "name"), (2, "version")):
        request.field.add(name=name, number=number, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                          label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    reply = proto.message_type.add(name="ModelReadyResponse")
    reply.field.add(name="ready", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    names = ("ServerReadyRequest", "ServerReadyResponse", "ModelReadyRequest", "ModelReadyResponse")
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{n}")) for n in names}


def _method(channel: grpc.aio.Channel, name: str):
    m = _messages()
    return channel.unary_unary(SERVICE + name, request_serializer=lambda msg: msg.SerializeToString(),
                               response_deserializer=m[f"{name}Response"].FromString)


async def triton_ready(channel: grpc.aio.Channel, models: list[str], timeout_s: float) -> tuple[bool, str]:
    """(ready, detail): the server is ready and so is every model in ``models``."""
    m = _messages()
    try:
        server = await _method(channel, "ServerReady")(m["ServerReadyRequest"](), timeout=timeout_s)
        if not server.ready:
            return False, "server not ready"
        replies = await asyncio.gather(*(_method(channel, "ModelReady")(m["ModelReadyRequest"](name=name),
                                                                      timeout=timeout_s) for name in models))
    except grpc.aio.AioRpcError as exc:
        return False, f"{exc.code().name}: {exc.details() or ''}".strip()
    except asyncio.TimeoutError:
        return False, "readiness check timed out"
    missing = [name for name, reply in zip(models, replies) if not reply.ready]
    if missing:
        return False, f"models not ready: {', '.join(missing)}"
    return True, f"models ready: {', '.join(models)}" if models else "server ready"
