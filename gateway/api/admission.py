"""Probing an upload before it is accepted, so that a file that is neither a video nor a photo, or a
video over the duration limit, gets 422 at once instead of a job that fails later."""
from __future__ import annotations

import logging

import grpc

from hpe3d.v1 import decoder_pb2
from services.common.job_scope import job_metadata
from services.common.settings import Settings
from services.common.stage_names import DECODER
from services.common.storage import ObjectStore

from ..jobs.job_errors import INPUT_ERRORS, JobFailed, error_from_rpc
from ..jobs.manifest import JobManifest
from ..jobs.outage import is_transient
from ..jobs.probe import apply_probe
from ..jobs.stages import StageClients

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 30.0


async def admit(job: JobManifest, clients: StageClients, store: ObjectStore, settings: Settings) -> None:
    """Probe ``job``'s upload once. Raises ``JobFailed`` when the upload itself is unusable (the
    caller records the job as failed and answers 422). Any other outcome, a decoder that is down
    included, admits the job: its worker probes again and waits outages out."""
    try:
        info = await clients.decoder.Probe(decoder_pb2.ProbeRequest(video=store.ref(job.input_key)),
                                           metadata=job_metadata(job.id), timeout=PROBE_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        if is_transient(exc):
            log.warning("decoder unavailable at submission of job %s; the worker will probe", job.id)
            return
        error = error_from_rpc(DECODER, exc)
        if error.code in INPUT_ERRORS:
            raise JobFailed(error) from exc
        return
    try:
        apply_probe(job, info, settings)
    except JobFailed as failed:
        if failed.error.code in INPUT_ERRORS:
            raise
