"""The job model the API and the workers share: the manifest and its store, the NATS JetStream
queue, progress events, job errors and outage handling, what a probe means for a job, and the gRPC
clients of the four stages (the API probes uploads and checks the stages' health with them). It
runs nothing itself: the API is ``gateway.api``, the worker ``gateway.worker``."""
