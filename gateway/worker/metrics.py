"""Prometheus metrics of a job worker (served on ``HPE3D_METRICS_PORT`` when it is set)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_RUNNING = Gauge("hpe3d_worker_jobs_running", "Jobs this worker runs now")
JOB_TRANSITIONS = Counter("hpe3d_worker_job_transitions_total", "Jobs entering a state", ["state"])
STAGE_CALL_SECONDS = Histogram(
    "hpe3d_worker_stage_call_seconds", "Duration of one stage call made by the worker", ["stage", "method", "code"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))
OUTAGE_RETRIES = Counter("hpe3d_worker_outage_retries_total", "Calls retried because a dependency was down",
                         ["what"])


def record_transition(old: str | None, new: str) -> None:
    """Count one job entering state ``new`` (nothing when it was already in it)."""
    if old != new:
        JOB_TRANSITIONS.labels(new).inc()
