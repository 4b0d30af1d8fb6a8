"""The API's routes: ``jobs`` (the REST API of jobs) and ``operations`` (health, readiness, metrics)."""
