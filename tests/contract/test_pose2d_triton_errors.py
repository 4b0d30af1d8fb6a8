"""Both Triton clients of the pose2d stage against the real Triton server: a request the server
refuses is a permanent error, not an outage the job would wait out."""
from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import DependencyUnavailable
from services.pose2d.client import TritonBlazePose
from services.pose2d.topdown_client import HeatmapModelInfo, TritonTopDown
from services.pose2d.triton_errors import TritonRequestRefused
from services.pose2d.triton_shm import TritonTensors
from services.triton.repositories import missing_model_files

pytestmark = [pytest.mark.contract,
              pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")]


def test_blazepose_client_reports_a_refused_shape_as_permanent(triton_stack):
    client = TritonBlazePose(triton_stack.settings.triton_url)
    try:
        size = client.info.detector_size
        with pytest.raises(TritonRequestRefused, match="unexpected shape"):
            client.detect(np.zeros((1, size // 2, size // 2, 3), np.uint8))
    finally:
        client.close()


def test_topdown_client_reports_a_refused_shape_as_permanent_not_unavailable(triton_stack):
    # a top-down client whose idea of the model's input (100x100 crops) is not the served model's
    # (the detector's 224x224 images): Triton answers INVALID_ARGUMENT, which must not read as an outage
    url = triton_stack.settings.triton_url
    client = TritonTopDown.__new__(TritonTopDown)
    import tritonclient.grpc as tgrpc
    client._tgrpc, client.url, client.timeout_s = tgrpc, url, 30.0
    client._client = tgrpc.InferenceServerClient(url)
    client.tensors = TritonTensors(client._client, tgrpc, url)    # shared memory: the server is on loopback
    client.info = HeatmapModelInfo("blazepose_detector", "image", "uint8", 100, 100, 17, 25, 25, 16)
    try:
        with pytest.raises(TritonRequestRefused, match="INVALID_ARGUMENT") as caught:
            client.heatmaps(np.zeros((2, 100, 100, 3), np.uint8))
        assert not isinstance(caught.value, DependencyUnavailable)
    finally:
        client.close()


def test_topdown_client_of_a_model_never_served_is_a_lookup_error(triton_stack):
    with pytest.raises(LookupError, match="no_such_model"):
        TritonTopDown(triton_stack.settings.triton_url, "no_such_model")
