"""What one API process holds (built in the app's lifespan) and the FastAPI dependencies that hand
it to the routes. Nothing about jobs is held here: jobs live in storage and on NATS."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from nats.aio.client import Client as NATS

from services.common.settings import Settings
from services.common.stage_names import GATEWAY
from services.common.storage import ObjectStore

from ..jobs import queue
from ..jobs.manifest import JobManifest, is_job_id
from ..jobs.manifest_store import ManifestStore
from ..jobs.stages import StageClients
from .control import JobControl
from .readiness import ReadinessProbe

log = logging.getLogger(__name__)


@dataclass
class ApiState:
    settings: Settings
    store: ObjectStore
    manifests: ManifestStore
    clients: StageClients
    readiness: ReadinessProbe
    control: JobControl
    nc: NATS | None = None
    _connecting: asyncio.Task | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, store: ObjectStore) -> "ApiState":
        """Call inside the event loop (the gRPC channels belong to it)."""
        clients = StageClients.from_settings(settings)
        manifests = ManifestStore(store)
        state = cls(settings=settings, store=store, manifests=manifests, clients=clients, readiness=None,  # type: ignore[arg-type]
                    control=None)  # type: ignore[arg-type]
        models = [m.strip() for m in settings.triton_models.split(",") if m.strip()]
        state.readiness = ReadinessProbe(store, clients, lambda: state.nc, settings.triton_url, models)
        state.control = JobControl(manifests, lambda: state.nc)
        return state

    def start(self) -> None:
        """Connect to NATS in the background: the API serves reads (and says why it is not
        ready) while the queue is away."""
        self._connecting = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        nc = await queue.connect(self.settings.nats_url, name=f"hpe3d-{GATEWAY}")
        self.nc = nc
        while True:
            try:
                await queue.ensure_stream(nc.jetstream())
                return
            except Exception as exc:  # noqa: BLE001 - JetStream still starting
                log.warning("job stream not ready: %s", exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(BaseException):
                await self._connecting
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self.readiness.close()
        await self.clients.close()


def api_state(request: Request) -> ApiState:
    return request.app.state.api


async def job_or_404(request: Request, job_id: str) -> JobManifest:
    job = await api_state(request).manifests.load(job_id) if is_job_id(job_id) else None
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job
