"""Prometheus metrics of an API replica (served at ``GET /metrics``)."""
from __future__ import annotations

from prometheus_client import Counter

UPLOAD_BYTES = Counter("hpe3d_gateway_upload_bytes_total", "Bytes of video accepted by POST /v1/jobs")
UPLOADS_REJECTED = Counter("hpe3d_gateway_uploads_rejected_total", "Uploads refused", ["reason"])
JOBS_SUBMITTED = Counter("hpe3d_gateway_jobs_submitted_total", "Job runs put on the queue (submissions and retries)")
STORAGE_UNAVAILABLE = Counter("hpe3d_gateway_storage_unavailable_total", "Requests answered 503: storage down")
QUOTA_REFUSALS = Counter("hpe3d_gateway_quota_refusals_total", "Submissions answered 429, by the limit reached",
                         ["limit"])
