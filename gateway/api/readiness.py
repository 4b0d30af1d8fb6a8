"""``/readyz``: storage, the job queue, every stage and Triton's models, checked concurrently and
cached briefly. Each dependency is reported with a reason when it is not ready."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from nats.aio.client import Client as NATS

from services.common.grpc_server import CLIENT_OPTIONS, client_target
from services.common.stage_names import NATS as NATS_PART
from services.common.stage_names import S3, STAGES, TRITON
from services.common.storage import ObjectStore

from ..jobs import queue
from ..jobs.stages import StageClients
from .triton_ready import triton_ready
from .views import DependencyStatus, Readiness


class ReadinessProbe:
    def __init__(self, store: ObjectStore, clients: StageClients, nc_provider: Callable[[], NATS | None],
                 triton_url: str, triton_models: list[str], cache_s: float = 2.0, timeout_s: float = 2.0):
        self.store = store
        self.clients = clients
        self.nc_provider = nc_provider
        self.triton_models = triton_models
        self.triton = grpc.aio.insecure_channel(client_target(triton_url), options=CLIENT_OPTIONS)
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._cached: Readiness | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()

    async def check(self) -> Readiness:
        async with self._lock:
            if self._cached is None or time.monotonic() - self._checked_at > self.cache_s:
                self._cached = await self._check_now()
                self._checked_at = time.monotonic()
            return self._cached

    async def close(self) -> None:
        await self.triton.close()

    async def _check_now(self) -> Readiness:
        names = [S3, NATS_PART, TRITON, *STAGES]
        results = await asyncio.gather(self._storage(), self._queue(),
                                       triton_ready(self.triton, self.triton_models, self.timeout_s),
                                       *(self.clients.serving(s, self.timeout_s) for s in STAGES))
        deps = {name: DependencyStatus(ok=ok, detail=detail) for name, (ok, detail) in zip(names, results)}
        return Readiness(ready=all(d.ok for d in deps.values()), dependencies=deps)

    async def _storage(self) -> tuple[bool, str]:
        try:
            exists = await asyncio.wait_for(asyncio.to_thread(self.store.client.bucket_exists, self.store.bucket),
                                            self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return False, f"{self.store.endpoint}: {type(exc).__name__}: {exc}"
        return True, "reachable" if exists else "reachable (bucket created on first write)"

    async def _queue(self) -> tuple[bool, str]:
        nc = self.nc_provider()
        if nc is None:
            return False, "not connected"
        try:
            info = await asyncio.wait_for(nc.jetstream().stream_info(queue.STREAM), self.timeout_s)
        except Exception as exc:  # noqa: BLE001
            return False, f"JetStream stream {queue.STREAM}: {type(exc).__name__}: {exc}"
        return True, f"{info.state.messages} job runs queued or in progress"
