"""The REST API (FastAPI): routers, dependencies, response models, SSE and the web page's routes
(``python -m gateway.api``). It never runs jobs: workers do (``gateway.worker``); the API shares
their job model (``gateway.jobs``) and imports nothing of the worker."""
