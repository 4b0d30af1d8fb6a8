"""BlazePose's .tflite models converted to ONNX (services/triton/tflite_to_onnx.py) compute what LiteRT
computes, on real frames of the test clip, with a dynamic batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.pose2d.models import DETECTOR, LANDMARKS, REPOSITORY_DIR, load_runner, missing_model_files

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tflite")

pytestmark = pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")

CLIP = Path(__file__).resolve().parents[1] / "data" / "two_people_office_24f.mp4"
# Outputs the pose2d stage uses must agree to 1e-3 of their largest magnitude (they are pixels and logits of
# up to several hundred: measured differences 1.2e-3 / 5.8e-4 / 1.8e-3 / 1e-7 / 2.8e-4 absolute for
# regressors / scores / landmarks / pose_flag / heatmap on these frames). The segmentation logits (up to
# about 1600) differ by up to 0.7, less than LiteRT's own XNNPACK and reference kernels differ (2.0).
RELATIVE = 1e-3


@pytest.fixture(scope="module")
def real_inputs():
    import av

    from services.pose2d.blazepose import detector_input, landmark_input
    from services.pose2d.client import LocalBlazePose
    from services.pose2d.estimator import PoseTracker

    with av.open(str(CLIP)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)][::4]
    tracker = PoseTracker(LocalBlazePose())
    crops = [landmark_input(frame, p.landmarks.roi) for frame in frames for p in tracker.update(frame)]
    return {DETECTOR.name: np.stack([detector_input(f)[0] for f in frames]), LANDMARKS.name: np.stack(crops)}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import onnx

    from services.triton.tflite_to_onnx import convert, spec_from_config

    out = {}
    for spec in (DETECTOR, LANDMARKS):
        path = tmp_path_factory.mktemp("onnx") / f"{spec.name}.onnx"
        onnx.save(convert(spec_from_config(REPOSITORY_DIR / spec.name)), str(path))
        out[spec.name] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return out


@pytest.mark.parametrize("spec", [DETECTOR, LANDMARKS], ids=lambda s: s.name)
def test_onnx_equals_litert_on_real_frames(spec, converted, real_inputs):
    images = real_inputs[spec.name]
    assert len(images) >= 6
    session = converted[spec.name]
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert session.get_inputs()[0].type == "tensor(uint8)"
    expected = load_runner(spec).infer({"image": images})
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image": images})))
    assert set(got) == {t.name for t in spec.outputs}
    for t in spec.outputs:
        assert got[t.name].shape == (len(images), *t.dims), t.name
        scale = max(1.0, float(np.abs(expected[t.name]).max()))
        diff = float(np.abs(got[t.name] - expected[t.name]).max())
        assert diff <= RELATIVE * scale, f"{t.name}: {diff} > {RELATIVE} x {scale}"
    # one image alone gives what it gives in a batch
    one = session.run([spec.outputs[0].name], {"image": images[2:3]})[0]
    np.testing.assert_allclose(one[0], got[spec.outputs[0].name][2], atol=1e-4 * max(1.0, np.abs(one).max()))


def test_unknown_op_is_named(tmp_path, monkeypatch):
    from services.triton import tflite_to_onnx

    monkeypatch.setattr(tflite_to_onnx, "_op_names", lambda: {})
    spec = tflite_to_onnx.spec_from_config(REPOSITORY_DIR / DETECTOR.name)
    with pytest.raises(tflite_to_onnx.UnsupportedOp, match="pose_detection.tflite: op \\? .* is not converted"):
        tflite_to_onnx.convert(spec)
