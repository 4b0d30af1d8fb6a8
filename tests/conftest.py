"""Shared fixtures: real servers on loopback, started once per test session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "proto"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory):
    """A real SeaweedFS S3 server on a free loopback port."""
    from hpe3d_cli.local_stack import LocalStack
    stack = LocalStack(workdir=tmp_path_factory.mktemp("s3"), components=("s3",))
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def settings(s3_stack):
    return s3_stack.settings


@pytest.fixture(scope="session")
def store(s3_stack):
    from services.common.storage import ObjectStore
    return ObjectStore.from_settings(s3_stack.settings)


@pytest.fixture(scope="session")
def triton_stack(tmp_path_factory, s3_stack):
    """A real Triton server (``services.triton.host``: tritonserver running our Python-backend model)
    serving services/triton/repository (BlazePose, the person detector), on free loopback ports."""
    from hpe3d_cli.local_stack import LocalStack
    stack = LocalStack(workdir=tmp_path_factory.mktemp("triton"), components=("triton",))
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory):
    """A real nats-server (JetStream, file store in a temp dir) on a free loopback port."""
    import subprocess
    import time

    from hpe3d_cli.local_stack import free_port
    from hpe3d_cli.nats_server import NatsServerCommand, nats_accepts, start_nats_server
    workdir = tmp_path_factory.mktemp("nats")
    command = NatsServerCommand(port=free_port(), store_dir=workdir / "js")
    proc = start_nats_server(command, workdir / "nats.log", die_with_parent=True)
    try:
        deadline = time.monotonic() + 20
        while not nats_accepts(command.url()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start: {(workdir / 'nats.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield command.url()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_api_key(store, name: str = "tester", admin: bool = False) -> str:
    """A new API key in ``store``: what ``hpe3d keys create`` makes."""
    from gateway.api.api_keys import ApiKeyStore
    return ApiKeyStore(store).create(name, admin)[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def require_shared(path: str) -> Path:
    """A file under ../shared/data, or skip: a user's clone has no ../shared."""
    full = SHARED_DATA / path
    if not full.exists():
        pytest.skip(f"{full} is not present (development data beside the checkout)")
    return full
