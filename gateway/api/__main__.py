"""``python -m gateway.api --host H --port P``: serve one replica of the REST API with uvicorn, and,
when ``HPE3D_METRICS_PORT`` is set, its operations port (``operations_app``: metrics, detailed
readiness) on the same host."""
from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvicorn

from services.common.logs import configure_logging
from services.common.settings import Settings
from services.common.stage_names import GATEWAY

from .app import create_app
from .operations_app import create_operations_app


class _OperationsServer(uvicorn.Server):
    """Leaves SIGTERM / SIGINT to the API's server, which stops this one when it has stopped."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def serve(settings: Settings, host: str, port: int) -> None:
    app = create_app(settings)
    api = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=30))
    if not settings.metrics_port:
        await api.serve()
        return
    ops = _OperationsServer(uvicorn.Config(create_operations_app(app), host=host, port=settings.metrics_port,
                                           log_config=None, lifespan="off"))
    ops_task = asyncio.create_task(ops.serve())
    try:
        await api.serve()
    finally:
        ops.should_exit = True
        await ops_task


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m gateway.api", description="Serve the hpe3d REST API.")
    parser.add_argument("--host", default=settings.bind_host, help="address to bind (default HPE3D_BIND_HOST)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    configure_logging(GATEWAY, settings.log_level)
    asyncio.run(serve(settings, args.host, args.port))


if __name__ == "__main__":
    main()
