"""``/readyz``: storage reachable and every stage SERVING, checked concurrently and cached briefly."""
from __future__ import annotations

import asyncio
import time

from services.common.storage import ObjectStore

from .stages import STAGE_SERVICES, StageClients
from .views import DependencyStatus, Readiness


class ReadinessProbe:
    def __init__(self, store: ObjectStore, clients: StageClients, cache_s: float = 2.0, timeout_s: float = 2.0):
        self.store = store
        self.clients = clients
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

    async def _check_now(self) -> Readiness:
        names = ["storage", *STAGE_SERVICES]
        results = await asyncio.gather(self._storage(), *(self.clients.serving(s, self.timeout_s) for s in STAGE_SERVICES))
        deps = {name: DependencyStatus(ok=ok, detail=detail) for name, (ok, detail) in zip(names, results)}
        return Readiness(ready=all(d.ok for d in deps.values()), dependencies=deps)

    async def _storage(self) -> tuple[bool, str]:
        try:
            exists = await asyncio.wait_for(asyncio.to_thread(self.store.client.bucket_exists, self.store.bucket),
                                            self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return False, f"{self.store.endpoint}: {type(exc).__name__}: {exc}"
        return True, "reachable" if exists else "reachable (bucket created on first write)"
