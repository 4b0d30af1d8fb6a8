"""``python -m gateway.api --host H --port P``: serve one replica of the REST API with uvicorn, and its
Prometheus metrics on HPE3D_METRICS_PORT when that is set (``GET /metrics`` on the API port needs an
admin key)."""
from __future__ import annotations

import argparse

import uvicorn
from prometheus_client import start_http_server

from services.common.logs import configure_logging
from services.common.settings import Settings
from services.common.stage_names import GATEWAY

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="python -m gateway.api", description="Serve the hpe3d REST API.")
    parser.add_argument("--host", default=settings.bind_host, help="address to bind (default HPE3D_BIND_HOST)")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    configure_logging(GATEWAY, settings.log_level)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.bind_host)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None,
                timeout_graceful_shutdown=30)


if __name__ == "__main__":
    main()
