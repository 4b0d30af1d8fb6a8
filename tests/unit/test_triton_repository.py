"""The Triton model repositories (services/triton/repository, read by the official image and by the
PyTriton host; services/triton/repository_gpu, BlazePose as ONNX for GPU nodes): each model's
config.pbtxt is its only description, so the two repositories' configs must agree with each other,
with the model files they serve (the .tflite files LiteRT runs, their ONNX conversions) and with what
the pose2d client needs of them. Parsed with Triton's own ModelConfig proto."""
import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS, PERSON_DETECTOR
from services.pose2d.client import BlazePoseInfo
from services.triton import litert_runner
from services.triton.blazepose.fetch_blazepose import WHEEL_MEMBERS
from services.triton.repositories import GPU_REPOSITORY_DIR, REPOSITORY_DIR, load_runner, missing_model_files

MODEL_NAMES = (BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS)   # the LiteRT models; the ONNX person detector beside them


def parse(name: str, repository: Path = REPOSITORY_DIR) -> model_config_pb2.ModelConfig:
    text = (repository / name / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def as_json(config) -> dict:
    return json.loads(json_format.MessageToJson(config, preserving_proto_field_name=True))


def tensors(config_tensors):
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims)) for t in config_tensors]


def test_repository_holds_exactly_the_served_models():
    models = sorted(p.name for p in REPOSITORY_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")
    # the BlazePose models (LiteRT) and the person detector (ONNX, tests/unit/test_pose2d_person_detector.py)
    assert models == sorted([*MODEL_NAMES, PERSON_DETECTOR]) == ["blazepose_detector", "blazepose_landmarks",
                                                                    "person_detector"]
    for name in MODEL_NAMES:
        assert (REPOSITORY_DIR / name / "1" / "model.py").is_file()
        # one runner for both models and the PyTriton host: each model folder links to it
        link = REPOSITORY_DIR / name / "litert_runner.py"
        assert link.is_symlink() and link.resolve() == Path(litert_runner.__file__).resolve()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_serves_a_fetched_tflite_file_with_every_tensor_bound(name):
    config = parse(name)
    assert config.name == name and config.backend == "python"
    assert config.max_batch_size >= 1
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds > 0
    assert len(config.instance_group) >= 1 and all(g.count >= 1 for g in config.instance_group)
    assert [(t.name, model_config_pb2.DataType.Name(t.data_type)) for t in config.input] == [("image", "TYPE_UINT8")]
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["tflite_file"] in {Path(member).name for member in WHEEL_MEMBERS}   # what `make models` writes
    mapping = dict(item.split("=") for item in params["tflite_tensors"].split(","))
    assert set(mapping) == {t.name for t in list(config.input) + list(config.output)}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_python_backend_reads_the_config_as_triton_passes_it(name):
    config = parse(name)
    inputs, outputs = litert_runner.bindings_from_config(as_json(config))
    assert [(b.name, b.dims) for b in inputs] == [(t.name, tuple(t.dims)) for t in config.input]
    assert [(b.name, b.dims) for b in outputs] == [(t.name, tuple(t.dims)) for t in config.output]
    assert [b.dtype for b in inputs] == ["uint8"]
    # the .tflite files were trained on [-1, 1] (detector) and [0, 1] (landmarks) inputs
    scale, offset = litert_runner.input_scaling(as_json(config))
    assert (offset, 255 * scale + offset) == pytest.approx((-1.0, 1.0) if name == BLAZEPOSE_DETECTOR else (0.0, 1.0))
    version_dir = REPOSITORY_DIR / name / "1"
    assert litert_runner.model_file(as_json(config), version_dir).name == config.parameters["tflite_file"].string_value


def test_missing_model_file_names_the_file_and_make_models(tmp_path):
    with pytest.raises(litert_runner.ModelFileMissing, match=r"pose_detection\.tflite.*make models"):
        litert_runner.LiteRTModel(tmp_path / "pose_detection.tflite", [], [])


@pytest.mark.skipif(bool(missing_model_files()), reason="BlazePose .tflite files absent: run `make models`")
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_tflite_file_has_the_config_tensors_and_batches(name):
    config = parse(name)
    runner = load_runner(name, num_threads=1)
    # the .tflite file's own tensors have the config's dims (with its batch of one)
    details = runner.interpreter.get_output_details()
    assert {d["name"]: tuple(d["shape"][1:]) for d in details} == {b.tflite_name: b.dims for b in runner.outputs}
    assert [b.name for b in runner.outputs] == [t.name for t in config.output]
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, *config.input[0].dims), dtype=np.uint8)
    out = runner.infer({"image": batch})
    assert set(out) == {t.name for t in config.output}
    for t in config.output:
        assert out[t.name].shape == (3, *t.dims) and out[t.name].dtype == np.float32
    first = config.output[0].name
    one = runner.infer({"image": batch[1:2]}, outputs=[first])
    assert list(one) == [first]
    assert np.allclose(one[first][0], out[first][1], atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        runner.infer({"image": batch[:, :10]})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gpu_repository_serves_the_onnx_conversion_under_the_same_tensors(name):
    cpu = parse(name)
    gpu = parse(name, GPU_REPOSITORY_DIR)
    assert gpu.name == name and gpu.platform == "onnxruntime_onnx" and not gpu.backend
    assert gpu.max_batch_size == cpu.max_batch_size
    assert tensors(gpu.input) == tensors(cpu.input) and tensors(gpu.output) == tensors(cpu.output)
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    link = GPU_REPOSITORY_DIR / name / "1" / "model.onnx"
    tflite = (REPOSITORY_DIR / name / "1" / cpu.parameters["tflite_file"].string_value).resolve()
    assert link.is_symlink() and link.resolve() == tflite.with_suffix(".onnx")
    assert sorted(p.name for p in GPU_REPOSITORY_DIR.iterdir() if p.is_dir()) == sorted([*MODEL_NAMES, PERSON_DETECTOR])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_file_has_the_config_tensors(name):
    onnx = pytest.importorskip("onnx")
    path = GPU_REPOSITORY_DIR / name / "1" / "model.onnx"
    if not path.exists():
        pytest.skip(f"{path} absent: run `make models`")
    graph = onnx.load(str(path), load_external_data=False).graph
    dtypes = {onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.FLOAT: "TYPE_FP32"}

    def described(values):   # the batch dimension first, then the config's dims
        return [(v.name, dtypes[v.type.tensor_type.elem_type],
                 tuple(d.dim_value for d in v.type.tensor_type.shape.dim[1:])) for v in values]
    gpu = parse(name, GPU_REPOSITORY_DIR)
    assert described(graph.input) == tensors(gpu.input) and described(graph.output) == tensors(gpu.output)


def test_both_repositories_describe_what_the_pose2d_client_needs():
    """The client learns every tensor from the server's configs; both repositories give it the same."""
    infos = [BlazePoseInfo.from_configs(*(as_json(parse(name, repository)) for name in MODEL_NAMES))
             for repository in (REPOSITORY_DIR, GPU_REPOSITORY_DIR)]
    assert infos[0] == infos[1]
    assert infos[0].detector_max_batch == parse(MODEL_NAMES[0]).max_batch_size
