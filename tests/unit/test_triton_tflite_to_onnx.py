"""BlazePose's .tflite models converted to ONNX (services/triton/tflite_to_onnx.py) compute what LiteRT
computes, on real frames of the test clip, with a dynamic batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS
from services.triton.model_config import read_config
from services.triton.repositories import REPOSITORY_DIR, load_runner, missing_model_files

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tflite")

pytestmark = pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")

CLIP = Path(__file__).resolve().parents[1] / "data" / "two_people_office_24f.mp4"
# Outputs the pose2d stage uses must agree to 1e-3 of their largest magnitude (they are pixels and logits of
# up to several hundred: measured differences 1.2e-3 / 5.8e-4 / 1.8e-3 / 1e-7 / 2.8e-4 absolute for
# regressors / scores / landmarks / pose_flag / heatmap on these frames). The segmentation logits (up to
# about 1600) differ by up to 0.7, less than LiteRT's own XNNPACK and reference kernels differ (2.0).
RELATIVE = 1e-3
# each model's served outputs, as its config.pbtxt declares them
OUTPUTS = {name: [(t.name, tuple(t.dims)) for t in read_config(REPOSITORY_DIR / name / "config.pbtxt").output]
           for name in (BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS)}


@pytest.fixture(scope="module")
def real_inputs():
    import av

    from bench.local_models import LocalBlazePose
    from services.pose2d.blazepose import detector_input, landmark_input
    from services.pose2d.estimator import PoseTracker

    with av.open(str(CLIP)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)][::4]
    models = LocalBlazePose()
    tracker, info = PoseTracker(models), models.info
    crops = [landmark_input(frame, p.landmarks.roi, info.landmark_size) for frame in frames
             for p in tracker.update(frame)]
    return {BLAZEPOSE_DETECTOR: np.stack([detector_input(f, info.detector_size)[0] for f in frames]),
            BLAZEPOSE_LANDMARKS: np.stack(crops)}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import onnx

    from services.triton.tflite_to_onnx import convert, spec_from_config

    out = {}
    for name in OUTPUTS:
        path = tmp_path_factory.mktemp("onnx") / f"{name}.onnx"
        onnx.save(convert(spec_from_config(REPOSITORY_DIR / name)), str(path))
        out[name] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return out


@pytest.mark.parametrize("name", list(OUTPUTS))
def test_onnx_equals_litert_on_real_frames(name, converted, real_inputs):
    images = real_inputs[name]
    assert len(images) >= 6
    session = converted[name]
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    expected = load_runner(name).infer({"image": images})
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": images})))
    assert set(got) == {output for output, _ in OUTPUTS[name]}
    for output, dims in OUTPUTS[name]:
        assert got[output].shape == (len(images), *dims), output
        scale = max(1.0, float(np.abs(expected[output]).max()))
        diff = float(np.abs(got[output] - expected[output]).max())
        assert diff <= RELATIVE * scale, f"{output}: {diff} > {RELATIVE} x {scale}"
    # one image alone gives what it gives in a batch
    first = OUTPUTS[name][0][0]
    one = session.run([first], {"image": images[2:3]})[0]
    np.testing.assert_allclose(one[0], got[first][2], atol=1e-4 * max(1.0, np.abs(one).max()))


def test_unknown_op_is_named(tmp_path, monkeypatch):
    from services.triton import tflite_to_onnx

    monkeypatch.setattr(tflite_to_onnx, "_op_names", lambda: {})
    spec = tflite_to_onnx.spec_from_config(REPOSITORY_DIR / BLAZEPOSE_DETECTOR)
    with pytest.raises(tflite_to_onnx.UnsupportedOp, match="pose_detection.tflite: op \\? .* is not converted"):
        tflite_to_onnx.convert(spec)
