"""The one vocabulary of names for the parts of hpe3d.

Stage names are what a job's progress, errors, events, logs and metrics call the four stages; they
are the same words as the processes of the local stack and the Kubernetes workloads that run them.
Part names add what is not a stage: storage, the queue, the Triton host, the jobs worker and the
REST API (called ``gateway``).
"""
from __future__ import annotations

DECODER = "decoder"
POSE2D = "pose2d"
LIFTER3D = "lifter3d"
RENDERER = "renderer"

#: The stages in the order a job runs them.
STAGES: tuple[str, ...] = (DECODER, POSE2D, LIFTER3D, RENDERER)

#: The gRPC service each stage serves (what its health check answers for).
STAGE_SERVICES: dict[str, str] = {
    DECODER: "hpe3d.v1.Decoder",
    POSE2D: "hpe3d.v1.Pose2D",
    LIFTER3D: "hpe3d.v1.Lifter3D",
    RENDERER: "hpe3d.v1.Renderer",
}

S3 = "s3"
NATS = "nats"
TRITON = "triton"
WORKER = "worker"
GATEWAY = "gateway"

#: Every part of a running system, dependencies first.
PARTS: tuple[str, ...] = (S3, NATS, TRITON, *STAGES, WORKER, GATEWAY)

#: Errors that happen outside any stage (in the worker or the API) name this instead of a stage.
JOBS = "jobs"
