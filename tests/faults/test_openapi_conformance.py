"""Property-based test of the API against its own OpenAPI document (schemathesis).

A real API replica runs on a small supervised stack (S3, NATS, the decoder that probes uploads, a
worker, the API); schemathesis generates requests for every documented operation from the document
served at ``/openapi.json`` and checks that no answer is a 5xx, that every status code is documented
and that every response body matches its documented schema. The event stream is left out (it streams
until its job ends). Examples are limited so the test runs in about a minute or two.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

pytestmark = [pytest.mark.faults]

MAX_EXAMPLES = 12  # per operation
REQUEST_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory):
    from hpe3d_cli.local_stack import LocalStack, queue_mode
    if not queue_mode():
        pytest.skip("needs the API/worker split (gateway.api, gateway.jobs)")
    stack = LocalStack(workdir=tmp_path_factory.mktemp("openapi"), components=("s3", "nats", "decoder", "worker", "gateway"),
                       startup_timeout_s=180)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture
def api_schema(api_stack):
    return schemathesis.openapi.from_url(f"{api_stack.gateway_url}/openapi.json").exclude(path_regex=r".*/events$")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
                           timeout=REQUEST_TIMEOUT_S)
