"""One settings object, read from environment variables.

The same names are used by the local stack and by the Kubernetes manifests. Every variable has a
default that suits the local stack, so a service starts with none set.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from services.common.pose_models import DEFAULT_POSE_MODEL, POSE_MODELS


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    # Object storage (S3 API: MinIO in Kubernetes, SeaweedFS in the local stack)
    s3_endpoint: str = "127.0.0.1:9000"      # HPE3D_S3_ENDPOINT, host:port
    s3_access_key: str = "hpe3d"              # HPE3D_S3_ACCESS_KEY
    s3_secret_key: str = "hpe3d-secret"       # HPE3D_S3_SECRET_KEY
    s3_secure: bool = False                   # HPE3D_S3_SECURE (true for https)
    s3_bucket: str = "hpe3d"                  # HPE3D_S3_BUCKET
    # Triton Inference Server (gRPC)
    triton_url: str = "127.0.0.1:8001"        # HPE3D_TRITON_URL
    triton_models: str = ",".join(POSE_MODELS[DEFAULT_POSE_MODEL].triton_models)  # HPE3D_TRITON_MODELS,
                                              # comma-separated: the models /readyz requires Triton to have
                                              # READY (default: those of the default pose model)
    triton_repositories: str = ""             # HPE3D_TRITON_REPOSITORIES, comma-separated model repositories
                                              # the CPU Triton host serves beside services/triton/repository
                                              # (where `hpe3d models export` wrote HRNet / SimpleBaseline)
    triton_shared_memory: str = "auto"        # HPE3D_TRITON_SHARED_MEMORY, tensors between pose2d and Triton in
                                              # system shared memory: auto (when HPE3D_TRITON_URL is loopback),
                                              # on (try it for any address), off (in the gRPC messages)
    triton_model_threads: int = 2             # HPE3D_TRITON_MODEL_THREADS, CPU threads each model of the CPU Triton
                                              # host runs on (ONNX Runtime intra-op, LiteRT); bench/triton_hop.py
                                              # measures the choice
    triton_server: str = "tritonserver"       # HPE3D_TRITON_SERVER, what the CPU Triton host runs: tritonserver
                                              # (our model in the Python backend's stub) or pytriton (the model in
                                              # the host's process); bench/triton_hop.py compares them
    topdown_flip_test: bool = True            # HPE3D_TOPDOWN_FLIP_TEST: top-down models also see the mirrored
                                              # crops (averaged, as the official test; twice the model work)
    # Stage addresses (gRPC, host:port)
    decoder_addr: str = "127.0.0.1:50051"     # HPE3D_DECODER_ADDR
    pose2d_addr: str = "127.0.0.1:50052"      # HPE3D_POSE2D_ADDR
    lifter3d_addr: str = "127.0.0.1:50053"    # HPE3D_LIFTER3D_ADDR
    renderer_addr: str = "127.0.0.1:50054"    # HPE3D_RENDERER_ADDR
    # Port a stage server listens on (each service reads its own)
    grpc_port: int = 0                        # HPE3D_GRPC_PORT; 0 = the port of its *_ADDR
    metrics_port: int = 0                     # HPE3D_METRICS_PORT; 0 = no Prometheus endpoint
    # Who may reach the stages and the Triton host
    bind_host: str = "127.0.0.1"              # HPE3D_BIND_HOST, address servers bind; 0.0.0.0 in pods
    stage_token: str = field(default="", repr=False)  # HPE3D_STAGE_TOKEN, shared secret every stage call
                                              # carries as `authorization: Bearer <token>`; "" = not checked
    # Pipeline limits and defaults
    segment_frames: int = 128                 # HPE3D_SEGMENT_FRAMES
    working_size: int = 640                   # HPE3D_WORKING_SIZE, longer side of decoded frames
    max_upload_mb: int = 500                  # HPE3D_MAX_UPLOAD_MB
    max_duration_s: float = 600.0             # HPE3D_MAX_DURATION_S
    max_persons: int = 8                      # HPE3D_MAX_PERSONS
    stage_concurrency: int = 4                # HPE3D_STAGE_CONCURRENCY, segments in flight per job
    stage_timeout_s: float = 600.0            # HPE3D_STAGE_TIMEOUT_S, deadline of one stage call
    outage_budget_s: float = 300.0            # HPE3D_OUTAGE_BUDGET_S, how long a job waits out a stage,
                                              # Triton or storage outage (back-off retries) before failing
    # Job queue (NATS JetStream) and workers
    nats_url: str = "nats://127.0.0.1:4222"   # HPE3D_NATS_URL
    worker_jobs: int = 2                      # HPE3D_WORKER_JOBS, jobs one worker process runs at once
    job_ack_wait_s: float = 30.0              # HPE3D_JOB_ACK_WAIT_S, a silent worker's job goes to another after this
    lifter_weights: str = ""                  # HPE3D_LIFTER_WEIGHTS; "" = the shipped weights
    lifter_threads: int = 1                   # HPE3D_LIFTER_THREADS, torch's threads in the lifter process
                                              # (0 = torch's default, one per core); 1 leaves the other
                                              # cores to the stages beside it (the live lifter's small
                                              # tensors only lose to a second thread's hand-offs)
    # Who may call the REST API, and how much each owner may use (gateway)
    auth: bool = True                         # HPE3D_AUTH; off = no sign-in, every caller is an admin
                                              # (a trusted single-user machine only; logged loudly)
    oidc_issuer: str = ""                     # HPE3D_OIDC_ISSUER, also accept JWTs of this OpenID Connect issuer
    oidc_audience: str = ""                   # HPE3D_OIDC_AUDIENCE, the audience those JWTs must carry (required
                                              # with an issuer)
    quota_jobs_in_flight: int = 10            # HPE3D_QUOTA_JOBS_IN_FLIGHT, an owner's jobs queued or running; 0 = no limit
    quota_uploads_per_hour: int = 60          # HPE3D_QUOTA_UPLOADS_PER_HOUR, an owner's uploads in any hour; 0 = no limit
    quota_stored_mb: int = 10240              # HPE3D_QUOTA_STORED_MB, size of an owner's stored uploads; 0 = no limit
    quota_lifter_weights: int = 20            # HPE3D_QUOTA_LIFTER_WEIGHTS, an owner's uploaded lifter weights; 0 = no limit
    retention_days: float = 30.0              # HPE3D_RETENTION_DAYS, jobs and all their objects are deleted this
                                              # long after submission (the workers' sweep)
    log_level: str = "INFO"                   # HPE3D_LOG_LEVEL

    @classmethod
    def from_env(cls) -> "Settings":
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"HPE3D_{f.name.upper()}")
            if raw is None:
                continue
            if f.type in ("bool", bool):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The settings as environment variables, for starting child processes."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f"HPE3D_{f.name.upper()}"] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    def listen_port(self, own_addr: str) -> int:
        """The port a stage server binds: HPE3D_GRPC_PORT, else the port of its own address."""
        return self.grpc_port or int(own_addr.rsplit(":", 1)[1])
