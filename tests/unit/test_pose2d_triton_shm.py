"""When the pose2d clients put tensors in shared memory, and what they do when a server refuses it
(the tritonclient is replaced by a fake that refuses as PyTriton's guarded API does)."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from services.pose2d.triton_shm import TritonTensors, shared_memory_wanted, url_host


@pytest.mark.parametrize("url, mode, wanted", [
    ("127.0.0.1:8001", "auto", True), ("localhost:8001", "auto", True), ("[::1]:8001", "auto", True),
    ("triton.hpe3d.svc:8001", "auto", False), ("10.0.0.7:8001", "auto", False),
    ("triton.hpe3d.svc:8001", "on", True), ("127.0.0.1:8001", "off", False),
])
def test_auto_means_a_loopback_server(url, mode, wanted):
    assert shared_memory_wanted(url, mode) is wanted


def test_url_host():
    assert url_host("127.0.0.1:8001") == "127.0.0.1"
    assert url_host("[::1]:8001") == "[::1]"


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(ValueError, match="triton_shared_memory must be one of auto, on, off, not 'yes'"):
        shared_memory_wanted("127.0.0.1:8001", "yes")


def test_the_setting_decides_when_no_mode_is_given(monkeypatch):
    monkeypatch.setenv("HPE3D_TRITON_SHARED_MEMORY", "off")
    assert not TritonTensors(object(), tgrpc, "127.0.0.1:8001").shared_memory
    monkeypatch.setenv("HPE3D_TRITON_SHARED_MEMORY", "auto")
    assert TritonTensors(object(), tgrpc, "127.0.0.1:8001").shared_memory
    assert not TritonTensors(object(), tgrpc, "triton:8001").shared_memory


class RefusingServer:
    """Refuses shared memory as a guarded server does; answers inference in the messages."""

    def __init__(self):
        self.registrations = 0
        self.inferences = []

    def get_model_config(self, model, as_json, client_timeout):
        return {"config": {"output": [{"name": "y", "dims": ["2"], "data_type": "TYPE_FP32"}]}}

    def register_system_shared_memory(self, name, key, size):
        self.registrations += 1
        raise InferenceServerException("[StatusCode.UNAVAILABLE] This protocol is restricted, expecting header "
                                       "'triton-grpc-protocol-triton-access-token'")

    def infer(self, model, inputs, outputs, client_timeout):
        self.inferences.append(["shared_memory_region" in i._input.parameters
                                for i in inputs])
        return self

    def as_numpy(self, name):
        return np.ones((1, 2), np.float32)


def test_a_refusing_server_leaves_the_client_on_grpc(caplog):
    server = RefusingServer()
    tensors = TritonTensors(server, tgrpc, "127.0.0.1:8001", "on")
    for _ in range(2):
        out = tensors.infer("m", {"x": np.zeros((1, 4), np.uint8)}, ("y",), 5)
        np.testing.assert_array_equal(out["y"], np.ones((1, 2), np.float32))
    assert not tensors.shared_memory
    assert server.registrations == 1                   # asked once, then not again
    assert server.inferences == [[False], [False]]    # both requests carried their tensors
    assert "tensors go in the gRPC messages from now on" in caplog.text


class UnreachableServer(RefusingServer):
    def register_system_shared_memory(self, name, key, size):
        raise InferenceServerException("[StatusCode.UNAVAILABLE] failed to connect to all addresses",
                                       status="StatusCode.UNAVAILABLE")


def test_an_outage_is_not_taken_for_a_refusal():
    tensors = TritonTensors(UnreachableServer(), tgrpc, "127.0.0.1:8001", "on")
    with pytest.raises(InferenceServerException, match="failed to connect"):
        tensors.infer("m", {"x": np.zeros((1, 4), np.uint8)}, ("y",), 5)
    assert tensors.shared_memory                       # still tried once the server is back


def test_an_output_the_config_does_not_list_goes_through_grpc():
    """No region can be sized for it: the request goes in the messages (the server answers or refuses
    it there), and shared memory stays on for the next."""
    server = RefusingServer()
    tensors = TritonTensors(server, tgrpc, "127.0.0.1:8001", "on")
    out = tensors.infer("m", {"x": np.zeros((1, 4), np.uint8)}, ("not_in_config",), 5)
    assert out["not_in_config"].shape == (1, 2)
    assert server.registrations == 0 and server.inferences == [[False]]
    assert tensors.shared_memory
