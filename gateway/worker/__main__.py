"""``python -m gateway.worker``: one job worker process.

Connects to NATS (``HPE3D_NATS_URL``) and storage, takes jobs off the queue and runs them until
SIGTERM or SIGINT; then its jobs finish the steps in flight (up to ``worker.HAND_BACK_GRACE_S``) and go
back to the queue with no owner and no lease, so that another worker resumes them from their manifests
at once. Serves Prometheus metrics on ``HPE3D_METRICS_PORT`` when set.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from prometheus_client import start_http_server

from services.common.logs import configure_logging
from services.common.settings import Settings
from services.common.stage_names import WORKER
from services.common.storage import ObjectStore

from ..jobs import queue
from ..jobs.stages import StageClients
from .worker import JobWorker

log = logging.getLogger(__name__)


async def serve(settings: Settings, worker_id: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    nc = await queue.connect(settings.nats_url, name=f"hpe3d-{WORKER}")
    clients = StageClients.from_settings(settings)
    try:
        await JobWorker(settings, ObjectStore.from_settings(settings), nc, clients, worker_id).run(stop)
    finally:
        await clients.close()
        with contextlib.suppress(Exception):
            await nc.drain()
    log.info("worker stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.worker", description="Run an hpe3d job worker.")
    parser.add_argument("--worker-id", default=None, help="name in manifests and logs (default: host-pid-random)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    configure_logging(WORKER, settings.log_level)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.bind_host)
    asyncio.run(serve(settings, args.worker_id))


if __name__ == "__main__":
    main()
