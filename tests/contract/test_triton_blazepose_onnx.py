"""The GPU repository's BlazePose (ONNX conversions of the .tflite files) served by the PyTriton host
(ONNX Runtime on the CPU here; the official image's ONNX Runtime backend on GPU nodes) answers as
LiteRT does, so the pose2d stage cannot tell which it talks to."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hpe3d_cli.local_stack import free_port
from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS
from services.triton.repositories import GPU_REPOSITORY_DIR as GPU_REPOSITORY
from services.triton.repositories import missing_model_files

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.contract,
              pytest.mark.skipif(bool(missing_model_files()) or not all(
                  (GPU_REPOSITORY / name / "1" / "model.onnx").exists()
                  for name in (BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS)),
                  reason="BlazePose .tflite / .onnx files absent: run `make models`")]


@pytest.fixture(scope="module")
def onnx_host(tmp_path_factory):
    from services.pose2d.client import TritonBlazePose
    from services.triton.host import ensure_libpython_first

    ensure_libpython_first()
    ports = [free_port() for _ in range(3)]
    log = (tmp_path_factory.mktemp("onnx-host") / "host.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "services.triton.host", "--repository", str(GPU_REPOSITORY),
                             "--host", "127.0.0.1", "--grpc-port", str(ports[0]), "--http-port", str(ports[1]),
                             "--metrics-port", str(ports[2])], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    client = TritonBlazePose(f"127.0.0.1:{ports[0]}")
    try:
        deadline = time.monotonic() + 120
        while not client.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the host did not get ready:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.5)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(60)
        log.close()


def test_onnx_blazepose_answers_as_litert(onnx_host):
    import av

    from bench.local_models import LocalBlazePose
    from services.pose2d.blazepose import Roi, detector_input, landmark_input

    with av.open(str(ROOT / "tests" / "data" / "two_people_office_24f.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    local = LocalBlazePose()
    assert onnx_host.info == local.info        # the same tensors, learned from either repository's configs
    detector_size, landmark_size = onnx_host.info.detector_size, onnx_host.info.landmark_size
    images = np.stack([detector_input(frame, detector_size)[0], detector_input(frame[:, 140:500], detector_size)[0]])
    (regressors, scores), (want_regressors, want_scores) = onnx_host.detect(images), local.detect(images)
    assert regressors.shape == (2, 2254, 12)
    assert np.abs(regressors - want_regressors).max() <= 1e-3 * np.abs(want_regressors).max()
    assert np.abs(scores - want_scores).max() <= 1e-3 * np.abs(want_scores).max()
    crops = np.stack([landmark_input(frame, Roi(310, 230, 350, 0.0), landmark_size),
                      landmark_input(frame, Roi(400, 200, 250, 0.2), landmark_size)])
    got, want = onnx_host.landmarks(crops), local.landmarks(crops)
    assert set(got) == set(want) == {"landmarks", "pose_flag", "heatmap"}
    for name in got:
        assert np.abs(got[name] - want[name]).max() <= 1e-3 * max(1.0, np.abs(want[name]).max()), name
    assert got["pose_flag"][0, 0] > 0.9
