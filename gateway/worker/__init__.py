"""The job worker, one deployable (``python -m gateway.worker``, the Kubernetes ``worker``
Deployment): takes jobs off the queue and runs them through the four stages (pipeline, segments),
records progress in the manifest (reporter) and serves its Prometheus metrics. It shares the job
model of ``gateway.jobs`` with the API and imports nothing of ``gateway.api``."""
