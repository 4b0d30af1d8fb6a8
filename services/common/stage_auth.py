"""The shared stage token: servers refuse calls without it, clients attach it to every call.

When ``Settings.stage_token`` (``HPE3D_STAGE_TOKEN``) is set, every stage server requires the call
metadata ``authorization: Bearer <token>`` and answers UNAUTHENTICATED otherwise. gRPC health
checking stays open, so Kubernetes probes and the local stack's readiness checks need no secret.
An empty token switches the check off (a stack on loopback that trusts its own machine).

Clients: ``stage_call_metadata(settings)`` is the metadata to add to a call by hand;
``token_channel_interceptors(token)`` / ``aio_token_interceptors(token)`` add it to every call made
through a channel.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence

import grpc

from .settings import Settings

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
BEARER = "Bearer "
#: Methods callable without the token: health checking, for probes and readiness checks.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/",)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """``(("authorization", "Bearer <token>"),)``, or nothing when ``token`` is empty."""
    return ((AUTHORIZATION, BEARER + token),) if token else ()


def stage_call_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The metadata a client adds to every stage call under ``settings`` (empty without a token)."""
    return bearer_metadata(settings.stage_token)


def _presented_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == AUTHORIZATION and isinstance(value, str) and value.startswith(BEARER):
            return value[len(BEARER):]
    return None


def token_matches(expected: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
    """Whether ``metadata`` carries ``authorization: Bearer <expected>`` (constant-time comparison)."""
    presented = _presented_token(metadata)
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


def _refusal(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts every call with UNAUTHENTICATED."""
    def abort(_request_or_iterator, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kwargs = {"request_deserializer": handler.request_deserializer,
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    return grpc.stream_stream_rpc_method_handler(abort, **kwargs)


class TokenCheck(grpc.ServerInterceptor):
    """Server interceptor: UNAUTHENTICATED for any call (health checks aside) whose metadata lacks
    ``authorization: Bearer <token>``. Construct it only with a non-empty token."""

    def __init__(self, token: str):
        if not token:
            raise ValueError("TokenCheck needs a non-empty token")
        self._token = token

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        if token_matches(self._token, handler_call_details.invocation_metadata):
            return handler
        presented = _presented_token(handler_call_details.invocation_metadata) is not None
        reason = "wrong stage token" if presented else "missing stage token"
        log.warning("%s refused: %s", method, reason)
        return _refusal(handler, f"{reason}: send 'authorization: Bearer <HPE3D_STAGE_TOKEN>'")


# -- clients ----------------------------------------------------------------------------------------
def _with_token(metadata, token: str) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in (metadata or ()) if k != AUTHORIZATION]
    return kept + list(bearer_metadata(token))


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata):
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class _BlockingToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                     grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    def _details(self, details):
        return _ClientCallDetails(details, _with_token(details.metadata, self._token))

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def token_channel_interceptors(token: str) -> list[grpc.UnaryUnaryClientInterceptor]:
    """Interceptors for ``grpc.intercept_channel`` that add the token to every call (none if empty)."""
    return [_BlockingToken(token)] if token else []


def _aio_details(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(details.method, details.timeout, _with_token(details.metadata, token),
                                      details.credentials, details.wait_for_ready)


class _AioUnaryUnaryToken(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(_aio_details(client_call_details, self._token), request)


class _AioUnaryStreamToken(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(_aio_details(client_call_details, self._token), request)


class _AioStreamStreamToken(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self._token = token

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_aio_details(client_call_details, self._token), request_iterator)


def aio_token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)`` that add the token to
    every unary, server-streaming and bidirectional call (the kinds the stages serve); none if
    ``token`` is empty."""
    return [_AioUnaryUnaryToken(token), _AioUnaryStreamToken(token), _AioStreamStreamToken(token)] if token else []
