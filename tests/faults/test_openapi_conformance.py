"""Property-based test of the API against its own OpenAPI document (schemathesis).

A real API replica runs on the supervised local stack (every part, so the API is ready and an
accepted upload becomes a real job); schemathesis generates valid and invalid requests for every
operation of the document served at ``/openapi.json``, signed in with the stack's admin key, and runs
every check schemathesis has (no 5xx, documented status codes, content types, headers and bodies, invalid
data rejected and valid data accepted, 405 with an ``Allow`` header for methods an operation does not
have, ...). Generated job ids name no job, so the event stream answers 404 at once. Then the schemathesis
command itself runs with ``--checks all`` (every phase: examples, coverage, fuzzing, stateful; the
repository's ``schemathesis.toml`` applies). Examples are limited so the test runs in a few minutes.
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import strategies as st
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

pytestmark = [pytest.mark.faults]

MAX_EXAMPLES = 50  # per operation (fewer where the operation has fewer distinct inputs)
REQUEST_TIMEOUT_S = 20


@pytest.fixture(scope="module")
def api_stack(tmp_path_factory):
    from hpe3d_cli.local_stack import LocalStack
    stack = LocalStack(workdir=tmp_path_factory.mktemp("openapi"), startup_timeout_s=180)
    stack.start()
    yield stack
    stack.stop()


def test_every_operation_answers_as_documented(api_stack):
    schema = schemathesis.openapi.from_url(f"{api_stack.gateway_url}/openapi.json")
    auth = {"Authorization": f"Bearer {api_stack.api_key}"}
    checks = CHECKS.get_all()   # every check schemathesis registers (as `--checks all`)
    assert len(checks) >= 10, [c.__name__ for c in checks]
    # ...but one, on one operation: a schema-valid upload need not be acceptable, since the body must be a
    # video or a photo (probed; 422 "not a video", "empty upload"), which a JSON schema cannot say (ST202)
    # GET /v1/live only documents the WebSocket of that path: its one answer to HTTP is 426 Upgrade Required
    not_for = {"POST /v1/jobs": {"positive_data_acceptance"}, "GET /v1/live": {"positive_data_acceptance"}}
    failures: list[str] = []
    tested = 0
    calls: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            response = case.call_and_validate(
                checks=[c for c in checks if c.__name__ not in not_for.get(operation.label, ())],
                timeout=REQUEST_TIMEOUT_S, headers=auth)
            calls.append(f"{operation.label} {response.status_code}")
        try:
            conforms()
        except Exception as exc:  # noqa: BLE001 - every operation is tried, failures listed together
            failures.append(f"{operation.label}: {exc}")
    assert tested >= 5, f"only {tested} operations in the document"
    print(f"{tested} operations, {len(calls)} requests:", dict(Counter(calls)))
    assert len(calls) >= tested
    assert not failures, "\n\n".join(failures)


def test_the_schemathesis_command_with_every_check_finds_nothing(api_stack):
    root = Path(__file__).resolve().parents[2]
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{api_stack.gateway_url}/openapi.json",
               "--checks", "all", "-H", f"Authorization: Bearer {api_stack.api_key}", "-n", "25",
               "--request-timeout", str(REQUEST_TIMEOUT_S), "--seed", "1"]
    run = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900)
    report = run.stdout[-6000:] + run.stderr[-2000:]
    print(report)
    assert run.returncode == 0, report
