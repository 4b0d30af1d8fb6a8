"""The Triton model repository (services/triton/repository, read by the official image and by the
PyTriton host) and the specs the pose2d client calls declare the same models: names, tensors, dims,
dtypes, batching. Parsed with Triton's own ModelConfig proto."""
import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from services.pose2d.models import (DETECTOR, LANDMARKS, MAX_BATCH_SIZE, MAX_QUEUE_DELAY_US, MODEL_NAMES, MODELS,
                                    REPOSITORY_DIR, load_runner, missing_model_files)
from services.triton import litert_runner


def parse(name: str) -> model_config_pb2.ModelConfig:
    text = (REPOSITORY_DIR / name / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def tensors(config_tensors):
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in config_tensors]


def test_repository_holds_exactly_the_served_models():
    models = sorted(p.name for p in REPOSITORY_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")
    # the BlazePose models (LiteRT) and the person detector (ONNX, tests/unit/test_pose2d_person_detector.py)
    assert models == sorted([*MODEL_NAMES, "person_detector"]) == ["blazepose_detector", "blazepose_landmarks",
                                                                    "person_detector"]
    for name in MODEL_NAMES:
        assert (REPOSITORY_DIR / name / "1" / "model.py").is_file()
        # one runner for both models and the PyTriton host: each model folder links to it
        link = REPOSITORY_DIR / name / "litert_runner.py"
        assert link.is_symlink() and link.resolve() == Path(litert_runner.__file__).resolve()


@pytest.mark.parametrize("spec", [DETECTOR, LANDMARKS], ids=lambda s: s.name)
def test_config_matches_the_pytriton_host(spec):
    config = parse(spec.name)
    assert config.name == spec.name and config.backend == "python"
    assert config.max_batch_size == MAX_BATCH_SIZE
    assert tensors(config.input) == [(t.name, t.config_dtype, t.dims) for t in spec.inputs]
    assert tensors(config.output) == [(t.name, t.config_dtype, t.dims) for t in spec.outputs]
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US
    assert len(config.instance_group) >= 1 and all(g.count >= 1 for g in config.instance_group)
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["tflite_file"] == spec.file.name
    mapping = dict(item.split("=") for item in params["tflite_tensors"].split(","))
    assert set(mapping) == {t.name for t in spec.inputs + spec.outputs}


@pytest.mark.parametrize("spec", [DETECTOR, LANDMARKS], ids=lambda s: s.name)
def test_python_backend_reads_the_config_as_triton_passes_it(spec):
    config = json.loads(json_format.MessageToJson(parse(spec.name), preserving_proto_field_name=True))
    inputs, outputs = litert_runner.bindings_from_config(config)
    assert [(b.name, b.dims) for b in inputs] == [(t.name, t.dims) for t in spec.inputs]
    assert [(b.name, b.dims) for b in outputs] == [(t.name, t.dims) for t in spec.outputs]
    assert [b.dtype for b in inputs] == [t.dtype for t in spec.inputs] == ["uint8"]
    # the .tflite files were trained on [-1, 1] (detector) and [0, 1] (landmarks) inputs
    scale, offset = litert_runner.input_scaling(config)
    assert (offset, 255 * scale + offset) == pytest.approx((-1.0, 1.0) if spec is DETECTOR else (0.0, 1.0))
    version_dir = REPOSITORY_DIR / spec.name / "1"
    assert litert_runner.model_file(config, version_dir).name == spec.file.name


def test_missing_model_file_names_the_file_and_make_models(tmp_path):
    with pytest.raises(litert_runner.ModelFileMissing, match=r"pose_detection\.tflite.*make models"):
        litert_runner.LiteRTModel(tmp_path / "pose_detection.tflite", [], [])


@pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")
@pytest.mark.parametrize("spec", [DETECTOR, LANDMARKS], ids=lambda s: s.name)
def test_runner_tensor_details_and_batches(spec):
    runner = load_runner(spec, num_threads=1)
    details = runner.interpreter.get_output_details()
    assert {d["name"]: tuple(d["shape"][1:]) for d in details} == {b.tflite_name: b.dims for b in runner.outputs}
    assert [b.name for b in runner.outputs] == [t.name for t in spec.outputs]
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, *spec.inputs[0].dims), dtype=np.uint8)
    out = runner.infer({"image": batch})
    assert set(out) == {t.name for t in spec.outputs}
    for t in spec.outputs:
        assert out[t.name].shape == (3, *t.dims) and out[t.name].dtype == np.float32
    one = runner.infer({"image": batch[1:2]}, outputs=[spec.outputs[0].name])
    assert list(one) == [spec.outputs[0].name]
    assert np.allclose(one[spec.outputs[0].name][0], out[spec.outputs[0].name][1], atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        runner.infer({"image": batch[:, :10]})


def test_specs_cover_both_models():
    assert set(MODELS) == set(MODEL_NAMES)


GPU_REPOSITORY = REPOSITORY_DIR.parent / "repository_gpu"


@pytest.mark.parametrize("spec", [DETECTOR, LANDMARKS], ids=lambda s: s.name)
def test_gpu_repository_serves_the_onnx_conversion_under_the_same_tensors(spec):
    cpu = parse(spec.name)
    gpu = text_format.Parse((GPU_REPOSITORY / spec.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert gpu.name == spec.name and gpu.platform == "onnxruntime_onnx" and not gpu.backend
    assert gpu.max_batch_size == cpu.max_batch_size
    assert tensors(gpu.input) == tensors(cpu.input) and tensors(gpu.output) == tensors(cpu.output)
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    link = GPU_REPOSITORY / spec.name / "1" / "model.onnx"
    assert link.is_symlink() and link.resolve() == spec.file.resolve().with_suffix(".onnx")
    assert sorted(p.name for p in GPU_REPOSITORY.iterdir() if p.is_dir()) == sorted([*MODEL_NAMES, "person_detector"])
