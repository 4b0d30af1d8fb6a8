"""What the gateway image runs: the REST API (``gateway.api``, ``python -m gateway.api``) and the jobs
workers (``gateway.jobs``, ``python -m gateway.jobs``), which meet on NATS and in object storage; and the
web page the API serves (``gateway/api/static``)."""
