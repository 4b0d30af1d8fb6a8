"""The REST API (FastAPI): routers, dependencies, response models, SSE and the web page's routes
(``python -m gateway.api``). It never runs jobs: workers do (``gateway.jobs``)."""
