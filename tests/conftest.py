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
    """A real Triton server (PyTriton) serving the BlazePose models, on free loopback ports."""
    from hpe3d_cli.local_stack import LocalStack
    stack = LocalStack(workdir=tmp_path_factory.mktemp("triton"), components=("triton",))
    stack.start()
    yield stack
    stack.stop()


def require_shared(path: str) -> Path:
    """A file under ../shared/data, or skip: a user's clone has no ../shared."""
    full = SHARED_DATA / path
    if not full.exists():
        pytest.skip(f"{full} is not present (development data beside the checkout)")
    return full
