"""Fixtures of the integration tests: the REST API served by uvicorn on loopback against the real S3 and
NATS servers of tests/conftest.py."""
from __future__ import annotations

import dataclasses
import threading
import time

import httpx
import pytest
import uvicorn

from gateway.api.app import create_app
from hpe3d_cli.local_stack import free_port


@pytest.fixture(scope="module")
def api_url(settings, store, nats_url):
    port = free_port()
    app = create_app(dataclasses.replace(settings, nats_url=nats_url), store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(10)
