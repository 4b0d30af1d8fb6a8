"""gRPC server bootstrap shared by every stage.

``serve()`` adds to a stage's servicer what every hpe3d server has: gRPC health checking,
reflection, an interceptor that logs every call with its job id, maps domain errors to status
codes and records Prometheus metrics (a call that ended early stops its work through the
servicer's ``cancellation.call_token``), and a graceful shutdown on SIGTERM/SIGINT that marks the
server NOT_SERVING and lets in-flight calls finish. Servers bind ``Settings.bind_host``
(127.0.0.1 unless told otherwise) and, when ``Settings.stage_token`` is set, refuse calls without
it (``stage_auth``); the servicers check that a call touches only its job's objects (``job_scope``).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from .cancellation import CallCancelled
from .errors import status_code_for
from .job_scope import metadata_job_id
from .logs import configure_logging, job_id_var
from .settings import Settings
from .stage_names import STAGE_SERVICES
from .stage_auth import TokenCheck, token_channel_interceptors
from .storage import ObjectStore

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# Clients spread calls over every address a (headless) Service name resolves to...
CLIENT_OPTIONS = CHANNEL_OPTIONS + [("grpc.lb_policy_name", "round_robin")]
# ...and servers close connections now and then, so clients notice new replicas after a scale-up.
# The grace period lets the longest stage call (a render) finish on the old connection.
SERVER_OPTIONS = CHANNEL_OPTIONS + [
    ("grpc.max_connection_age_ms", 5 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 15 * 60 * 1000),
]

RPC_SECONDS = Histogram("hpe3d_rpc_seconds", "Duration of a gRPC call", ["method", "code"],
                        buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))
RPC_TOTAL = Counter("hpe3d_rpc_total", "gRPC calls by method and status code", ["method", "code"])


class StageInterceptor(grpc.ServerInterceptor):
    """Logs each call, tags it with the caller's job id and turns domain errors into statuses."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = handler_call_details.method

        def guard(context, started):
            def finish(code: grpc.StatusCode) -> None:
                elapsed = time.perf_counter() - started
                RPC_SECONDS.labels(method, code.name).observe(elapsed)
                RPC_TOTAL.labels(method, code.name).inc()
                log.info("%s -> %s in %.3fs", method, code.name, elapsed)
            return finish

        def fail(exc: BaseException, context, finish) -> None:
            code = status_code_for(exc)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
            elif isinstance(exc, CallCancelled):
                log.info("%s stopped: %s", method, exc)
            else:
                log.warning("%s failed: %s", method, exc)
            finish(code)
            context.abort(code, str(exc) or type(exc).__name__)

        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request, context):
                token = job_id_var.set(metadata_job_id(context))
                finish = guard(context, time.perf_counter())
                try:
                    reply = inner(request, context)
                    finish(grpc.StatusCode.OK)
                    return reply
                except Exception as exc:  # noqa: BLE001 - mapped to a status code
                    if isinstance(exc, grpc.RpcError) or context.code() not in (None, grpc.StatusCode.OK):
                        raise
                    fail(exc, context, finish)
                finally:
                    job_id_var.reset(token)
            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)

        def streamed(inner):
            """``inner`` (a server-streaming or bidirectional handler) with the job id logged and its
            errors mapped, as ``unary`` above."""
            def run(request_or_iterator, context):
                token = job_id_var.set(metadata_job_id(context))
                finish = guard(context, time.perf_counter())
                try:
                    yield from inner(request_or_iterator, context)
                    finish(grpc.StatusCode.OK)
                except Exception as exc:  # noqa: BLE001
                    if isinstance(exc, grpc.RpcError) or context.code() not in (None, grpc.StatusCode.OK):
                        raise
                    fail(exc, context, finish)
                finally:
                    job_id_var.reset(token)
            return run

        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                streamed(handler.unary_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                streamed(handler.stream_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler


class StageServer:
    """A started gRPC server with health and reflection; ``stop()`` drains it."""

    def __init__(self, server: grpc.Server, health_servicer: health.HealthServicer, port: int,
                 service_names: list[str]):
        self.server = server
        self.health = health_servicer
        self.port = port
        self.service_names = service_names

    def stop(self, grace_s: float = 30.0) -> None:
        for name in self.service_names + [""]:
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.stop(grace_s).wait()

    def wait(self) -> None:
        self.server.wait_for_termination()


def start_server(register: Callable[[grpc.Server], None], service_names: list[str], port: int,
                 host: str = Settings.bind_host, max_workers: int = 8, token: str = "") -> StageServer:
    """Start a server on ``host:port`` (port 0 picks a free one; ``host`` 127.0.0.1 by default, so
    only this machine can call it) with ``register`` adding the stage servicer. ``service_names``
    are the full names (``hpe3d.v1.Decoder``) for health/reflection. With a ``token``, every call
    but health checks must carry ``authorization: Bearer <token>`` (else UNAUTHENTICATED)."""
    interceptors = ([TokenCheck(token)] if token else []) + [StageInterceptor()]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                         interceptors=interceptors, options=SERVER_OPTIONS)
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        service_names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind gRPC port {host}:{port}")
    server.start()
    for name in service_names + [""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return StageServer(server, health_servicer, bound, service_names)


def serve_forever(register: Callable[[grpc.Server], None], service_names: list[str], port: int,
                  metrics_port: int = 0, grace_s: float = 30.0, host: str = Settings.bind_host,
                  token: str = "", max_workers: int = 8) -> None:
    """Run a stage on ``host:port`` until SIGTERM/SIGINT, then finish in-flight calls (up to
    ``grace_s``). The metrics endpoint binds the same ``host``."""
    if metrics_port:
        start_http_server(metrics_port, addr=host)
    stage = start_server(register, service_names, port, host=host, token=token, max_workers=max_workers)
    log.info("serving %s on %s:%d (stage token %s)", ", ".join(service_names), host, stage.port,
             "required" if token else "not required")
    stopping = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal %d: draining", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stopping.wait()
    stage.stop(grace_s)
    log.info("stopped")


def client_target(addr: str) -> str:
    """``host:port`` as a DNS target, so every address the name resolves to (one per replica behind
    a headless Kubernetes Service) gets calls; a comma-separated list of IPv4 ``ip:port`` (replicas
    on fixed ports, as the local stack runs them) as gRPC's static ``ipv4:`` target, balanced the same
    way. Use it with ``CLIENT_OPTIONS``."""
    if "://" in addr or addr.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
        return addr
    if "," in addr:
        return "ipv4:" + ",".join(a.strip() for a in addr.split(",") if a.strip())
    return f"dns:///{addr}"


def channel(addr: str, token: str = "") -> grpc.Channel:
    """A blocking client channel with the message-size limits every hpe3d server accepts, balancing
    calls round-robin over the stage's replicas; with a ``token`` every call carries it."""
    ch = grpc.insecure_channel(client_target(addr), options=CLIENT_OPTIONS)
    interceptors = token_channel_interceptors(token)
    return grpc.intercept_channel(ch, *interceptors) if interceptors else ch


def run_stage(stage: str, register: Callable[..., object], max_workers: int = 8) -> None:
    """The ``main()`` of a stage server (``stage`` one of ``stage_names.STAGES``): settings from the
    environment, JSON logs, the object store, then ``register(server, store, settings)`` served as the
    stage's gRPC service (``STAGE_SERVICES``) on the port of ``<stage>_addr`` until stopped, with
    ``max_workers`` threads (a stage with live streams needs one per open stream on top)."""
    settings = Settings.from_env()
    configure_logging(stage, settings.log_level)
    store = ObjectStore.from_settings(settings)
    serve_forever(lambda server: register(server, store, settings), [STAGE_SERVICES[stage]],
                  settings.listen_port(getattr(settings, f"{stage}_addr")), settings.metrics_port,
                  host=settings.bind_host, token=settings.stage_token, max_workers=max_workers)
