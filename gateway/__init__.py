"""Two deployables and what they share: the REST API (``gateway.api``, ``python -m gateway.api``,
with the web page it serves in ``gateway/api/static``), the job worker (``gateway.worker``,
``python -m gateway.worker``) and the job model both use (``gateway.jobs``). The API and the workers
meet on NATS and in object storage."""
