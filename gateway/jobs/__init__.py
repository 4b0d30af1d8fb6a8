"""The jobs: manifests, the NATS JetStream queue, the worker that runs jobs through the four stages
(``python -m gateway.jobs``), its stage clients and its outage handling."""
