"""Prometheus metrics of the gateway (served at ``GET /metrics``)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_BY_STATE = Gauge("hpe3d_gateway_jobs", "Jobs this gateway process tracks, by state", ["state"])
JOB_TRANSITIONS = Counter("hpe3d_gateway_job_transitions_total", "Jobs entering a state", ["state"])
STAGE_CALL_SECONDS = Histogram(
    "hpe3d_gateway_stage_call_seconds", "Duration of one stage call made by the gateway", ["stage", "method", "code"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))
UPLOAD_BYTES = Counter("hpe3d_gateway_upload_bytes_total", "Bytes of video accepted by POST /v1/jobs")
UPLOADS_REJECTED = Counter("hpe3d_gateway_uploads_rejected_total", "Uploads refused", ["reason"])


def record_transition(old: str | None, new: str) -> None:
    """Move one job from state ``old`` (None for a new job) to ``new`` in the gauges and counters."""
    if old == new:
        return
    if old is not None:
        JOBS_BY_STATE.labels(old).dec()
    JOBS_BY_STATE.labels(new).inc()
    JOB_TRANSITIONS.labels(new).inc()
