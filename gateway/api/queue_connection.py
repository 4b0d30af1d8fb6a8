"""The API replica's NATS connection: made in the background, so that the API starts and answers
(reads, and a 503 for submissions) while NATS is away; once made, the client reconnects by itself."""
from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS

from services.common.stage_names import GATEWAY

from ..jobs import queue

log = logging.getLogger(__name__)


class QueueConnection:
    def __init__(self, url: str):
        self.url = url
        self._nc: NATS | None = None
        self._task: asyncio.Task | None = None

    def current(self) -> NATS | None:
        """The connected client, or None while there is none."""
        return self._nc if self._nc is not None and self._nc.is_connected else None

    def start(self) -> None:
        """Call inside the event loop."""
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        self._nc = await queue.connect(self.url, name=f"hpe3d-{GATEWAY}")
        while True:
            try:
                await queue.ensure_stream(self._nc.jetstream())
                return
            except Exception as exc:  # noqa: BLE001 - JetStream still starting
                log.warning("job stream not ready: %s", exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
