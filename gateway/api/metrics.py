"""Prometheus metrics of an API replica (served at ``GET /metrics``)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge

UPLOAD_BYTES = Counter("hpe3d_gateway_upload_bytes_total", "Bytes of video accepted by POST /v1/jobs")
UPLOADS_REJECTED = Counter("hpe3d_gateway_uploads_rejected_total", "Uploads refused", ["reason"])
JOBS_SUBMITTED = Counter("hpe3d_gateway_jobs_submitted_total", "Job runs put on the queue (submissions and retries)")
STORAGE_UNAVAILABLE = Counter("hpe3d_gateway_storage_unavailable_total", "Requests answered 503: storage down")
LIVE_SESSIONS = Gauge("hpe3d_gateway_live_sessions", "/v1/live WebSocket sessions open")
LIVE_FRAMES = Counter("hpe3d_gateway_live_frames_total", "/v1/live frames by outcome: received, answered, "
                      "dropped (replaced while waiting), refused (not a JPEG)", ["outcome"])
LIVE_BUFFERED_BYTES = Gauge("hpe3d_gateway_live_buffered_bytes", "JPEG bytes held by live sessions: the frame "
                            "waiting for its turn and the recordings")
LIVE_RECORDINGS = Counter("hpe3d_gateway_live_recordings_total", "Live recordings made into jobs")
QUOTA_REFUSALS = Counter("hpe3d_gateway_quota_refusals_total", "Submissions answered 429, by the limit reached",
                         ["limit"])
