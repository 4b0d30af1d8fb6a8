"""What one API process holds (built in the app's lifespan) and the FastAPI dependencies that hand
it to the routes. Nothing about jobs is held here: jobs live in storage and on NATS."""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request

from services.common.settings import Settings
from services.common.storage import ObjectStore

from ..jobs.manifest import JobManifest, is_job_id
from ..jobs.manifest_store import ManifestStore
from ..jobs.stages import StageClients
from .authentication import Authenticator, Caller, require_caller
from .control import JobControl
from .queue_connection import QueueConnection
from .quotas import Quotas
from .readiness import ReadinessProbe


@dataclass
class ApiState:
    settings: Settings
    store: ObjectStore
    manifests: ManifestStore
    clients: StageClients
    queue: QueueConnection
    readiness: ReadinessProbe
    control: JobControl
    auth: Authenticator
    quotas: Quotas

    @classmethod
    def build(cls, settings: Settings, store: ObjectStore) -> "ApiState":
        """Call inside the event loop (the gRPC channels and the NATS connection belong to it);
        the NATS connection is made in the background."""
        clients = StageClients.from_settings(settings)
        manifests = ManifestStore(store)
        connection = QueueConnection(settings.nats_url)
        connection.start()
        models = [m.strip() for m in settings.triton_models.split(",") if m.strip()]
        return cls(settings=settings, store=store, manifests=manifests, clients=clients, queue=connection,
                   readiness=ReadinessProbe(store, clients, connection.current, settings.triton_url, models),
                   control=JobControl(manifests, connection.current), auth=Authenticator(settings, store),
                   quotas=Quotas(settings, store, manifests))

    async def close(self) -> None:
        await self.queue.close()
        await self.readiness.close()
        await self.clients.close()


def api_state(request: Request) -> ApiState:
    return request.app.state.api


async def job_or_404(request: Request, job_id: str, caller: Caller = Depends(require_caller)) -> JobManifest:
    """The job ``job_id`` when the caller may see it; 404 alike for another owner's job and for no
    job at all, so that job ids cannot be probed."""
    job = await api_state(request).manifests.load(job_id) if is_job_id(job_id) else None
    if job is None or not caller.may_see(job):
        raise HTTPException(404, f"no job {job_id}")
    return job
