"""The one mapping of Triton's answers to the stage's errors (``services.pose2d.triton_errors``): an
outage is waited out by the job worker, a refused request or a model the server never served fails
the job at once. The texts are Triton's own (tritonserver 2.51 under PyTriton)."""
from __future__ import annotations

import grpc
import pytest
from tritonclient.utils import InferenceServerException

from services.common.errors import DependencyUnavailable, ModelNotServed, status_code_for
from services.pose2d.triton_errors import TritonRequestRefused, triton_error

URL, MODEL = "127.0.0.1:8001", "blazepose_detector"


def answer(status: str, message: str) -> InferenceServerException:
    return InferenceServerException(msg=message, status=f"StatusCode.{status}")


@pytest.mark.parametrize("status, message", [
    ("UNAVAILABLE", "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8001: "
                    "Failed to connect to remote host: Connection refused"),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded"),
    ("RESOURCE_EXHAUSTED", "Exceeds maximum queue size"),
    ("NOT_FOUND", "Request for unknown model: 'blazepose_detector' has no available versions"),
])
def test_outages_are_unavailable(status, message):
    for seen in (False, True):
        error = triton_error(answer(status, message), URL, MODEL, served_before=seen)
        assert isinstance(error, DependencyUnavailable)
        assert status_code_for(error) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("message", [
    "[request id: <id_unknown>] unexpected shape for input 'image' for model 'blazepose_detector'. "
    "Expected [-1,224,224,3], got [1,100,100,3].",
    "[request id: <id_unknown>] inference input 'image' data-type is 'FP32', but model 'blazepose_detector' "
    "expects 'UINT8'",
    "unexpected inference input 'bogus' for model 'blazepose_detector'",
    "[request id: <id_unknown>] inference request batch-size must be <= 16 for 'blazepose_detector'",
])
def test_refused_requests_are_permanent(message):
    error = triton_error(answer("INVALID_ARGUMENT", message), URL, MODEL, served_before=True)
    assert isinstance(error, TritonRequestRefused) and not isinstance(error, DependencyUnavailable)
    assert status_code_for(error) == grpc.StatusCode.INTERNAL
    assert message in str(error) and URL in str(error)


def test_an_unknown_model_is_permanent_unless_it_was_served_before():
    unknown = answer("NOT_FOUND", "Request for unknown model: 'blazepose_detector' is not found")
    never = triton_error(unknown, URL, MODEL, served_before=False)
    assert isinstance(never, ModelNotServed) and status_code_for(never) == grpc.StatusCode.FAILED_PRECONDITION
    # a model this client was served, now unknown: the server restarted and is binding its models again
    assert isinstance(triton_error(unknown, URL, MODEL, served_before=True), DependencyUnavailable)
