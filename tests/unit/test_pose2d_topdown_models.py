"""HRNet and SimpleBaseline: the official checkpoint layout, checkpoint loading, and the ONNX export
(``hpe3d models export``) equal to the PyTorch model.

Where the key names come from: ``tests/data/hrnet_w32_official_keys.json`` and
``simplebaseline_r50_official_keys.json`` list the state-dict keys and shapes of the official models of
github.com/leoxiaobin/deep-high-resolution-net.pytorch (``lib/models/pose_hrnet.py`` with the
w32_256x192 config, ``lib/models/pose_resnet.py`` with the resnet50 256x192 config), as those models,
built by the official code with random weights, list them. The parameter
counts below are those of that repository's model zoo (HRNet-W32 28.5M, W48 63.6M; SimpleBaseline
ResNet-50/101/152 34.0M / 53.0M / 68.6M), an independent check of the whole layout.

Random weights here are conformance only: they show the export computes what PyTorch computes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from services.common.pose_models import IMAGENET_MEAN, IMAGENET_STD, TOPDOWN_MODELS  # noqa: E402
from services.triton.model_config import numpy_dtype, read_config  # noqa: E402
from services.triton.topdown.checkpoint import (CheckpointError, build_model, load_checkpoint,  # noqa: E402
                                                official_state_dict)
from services.triton.topdown.export_onnx import main as export_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
ZOO_PARAMETERS_M = {"hrnet_w32": 28.5, "hrnet_w32_384": 28.5, "hrnet_w48": 63.6, "hrnet_w48_384": 63.6,
                    "simplebaseline_r50": 34.0, "simplebaseline_r101": 53.0, "simplebaseline_r152": 68.6}


def randomised(name: str, seed: int = 0):
    """The model with random weights and plausible batch-norm statistics (conformance only)."""
    torch.manual_seed(seed)
    model = build_model(TOPDOWN_MODELS[name])
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif key.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
    return model


def reference_heatmaps(model, rgb: np.ndarray) -> np.ndarray:
    """What the official code computes for RGB uint8 crops [N, H, W, 3]."""
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.eval()(x).numpy()


@pytest.mark.parametrize("name", ["hrnet_w32", "simplebaseline_r50"])
def test_state_dict_matches_the_official_layout(name):
    expected = json.loads((DATA / f"{name}_official_keys.json").read_text())["keys"]
    ours = {k: list(v.shape) for k, v in build_model(TOPDOWN_MODELS[name]).state_dict().items()}
    assert list(ours) == list(expected)
    assert ours == expected


@pytest.mark.parametrize("name", sorted(ZOO_PARAMETERS_M))
def test_parameter_count_is_the_model_zoo_figure(name):
    count = sum(p.numel() for p in build_model(TOPDOWN_MODELS[name]).parameters()) / 1e6
    assert round(count, 1) == ZOO_PARAMETERS_M[name]


def test_heatmaps_are_a_quarter_of_the_crop():
    for name in ("hrnet_w32_384", "simplebaseline_r50"):
        spec = TOPDOWN_MODELS[name]
        with torch.no_grad():
            out = build_model(spec)(torch.zeros(1, 3, spec.height, spec.width))
        assert tuple(out.shape[1:]) == spec.heatmap_shape == (17, spec.height // 4, spec.width // 4)


def test_checkpoint_forms_plain_and_wrapped(tmp_path):
    model = randomised("simplebaseline_r50")
    state = model.state_dict()
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "wrapped.pth.tar"
    torch.save(state, plain)
    torch.save({"epoch": 140, "state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    for path in (plain, wrapped):
        loaded = load_checkpoint(TOPDOWN_MODELS["simplebaseline_r50"], path).state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert official_state_dict({"model": {"module.a": 1}}) == {"a": 1}


def test_wrong_or_missing_checkpoint_names_the_problem(tmp_path):
    torch.save(randomised("simplebaseline_r50").state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="not a hrnet_w32 checkpoint .*pose_hrnet_w32_256x192.pth.*missing"):
        load_checkpoint(TOPDOWN_MODELS["hrnet_w32"], tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="306 missing"):
        load_checkpoint(TOPDOWN_MODELS["simplebaseline_r101"], tmp_path / "r50.pth")
    torch.save(build_model(TOPDOWN_MODELS["hrnet_w32"]).state_dict(), tmp_path / "w32.pth")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(TOPDOWN_MODELS["hrnet_w48"], tmp_path / "w32.pth")
    with pytest.raises(FileNotFoundError, match="supply the official checkpoint pose_hrnet_w48_384x288.pth"):
        load_checkpoint(TOPDOWN_MODELS["hrnet_w48_384"], tmp_path / "absent.pth")


@pytest.mark.parametrize("name", ["hrnet_w32", "simplebaseline_r50"])
def test_export_writes_a_triton_model_equal_to_pytorch(tmp_path, name):
    """`hpe3d models export` on an official-style checkpoint: config.pbtxt + 1/model.onnx, dynamic
    batch, uint8 input, heatmaps equal to the PyTorch model's."""
    model = randomised(name)
    weights = tmp_path / TOPDOWN_MODELS[name].checkpoint
    torch.save(model.state_dict(), weights)
    assert export_main([name, "--weights", str(weights), "--repository", str(tmp_path / "repo")]) == 0

    config = read_config(tmp_path / "repo" / name / "config.pbtxt")
    assert config.name == name and config.platform == "onnxruntime_onnx" and config.max_batch_size >= 8
    assert config.HasField("dynamic_batching")
    assert [g.kind for g in config.instance_group] == [config.instance_group[0].KIND_GPU]
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    (image,), (heatmaps,) = config.input, config.output
    assert (image.name, numpy_dtype(image.data_type), list(image.dims)) == ("image", np.uint8, [256, 192, 3])
    assert (heatmaps.name, numpy_dtype(heatmaps.data_type), list(heatmaps.dims)) == (
        "heatmaps", np.float32, [17, 64, 48])

    session = ort.InferenceSession(str(tmp_path / "repo" / name / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (1, 2):
        crops = rng.integers(0, 256, (batch, 256, 192, 3), dtype=np.uint8)
        onnx_out = session.run(["heatmaps"], {"image": crops})[0]
        expected = reference_heatmaps(model, crops)
        assert onnx_out.shape == (batch, 17, 64, 48)
        np.testing.assert_allclose(onnx_out, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_float32_input_and_cpu_group(tmp_path):
    model = randomised("simplebaseline_r50")
    torch.save(model.state_dict(), tmp_path / "r50.pth")
    assert export_main(["simplebaseline_r50", "--weights", str(tmp_path / "r50.pth"), "--repository",
                        str(tmp_path), "--input", "float32", "--device", "cpu"]) == 0
    config = read_config(tmp_path / "simplebaseline_r50" / "config.pbtxt")
    assert list(config.input[0].dims) == [3, 256, 192] and numpy_dtype(config.input[0].data_type) == np.float32
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    x = np.random.default_rng(2).normal(size=(1, 3, 256, 192)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "simplebaseline_r50" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {"image": x})[0], expected, atol=1e-5)


def test_export_refuses_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "services.triton.topdown.export_onnx", "hrnet_w32", "--weights",
                           str(tmp_path / "nope.pth"), "--repository", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "pose_hrnet_w32_256x192.pth" in proc.stderr and not (tmp_path / "hrnet_w32").exists()
