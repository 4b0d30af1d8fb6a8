"""What each model folder of a repository needs to be served on the CPU, and the serving repository
that ``tritonserver`` loads: the source ``config.pbtxt`` files with the Python backend.

A model folder's config.pbtxt stays its one description. ``plan_model`` reads it and decides which of
our runners computes the model (``onnxruntime_onnx`` -> ONNX Runtime, ``onnx_runner.py``; the Python
backend with a ``tflite_file`` parameter -> LiteRT, ``litert_runner.py``) and which weight file it
reads; a model that cannot be served raises ``ModelUnservable`` naming the file and the command that
makes it. ``write_serving_repository`` then writes, per model, ``<name>/config.pbtxt`` (the source
config with ``backend: "python"``, a CPU instance group of the source's count, and the parameters
``hpe3d_runner`` and ``num_threads``), ``<name>/1/model.py`` (a link to ``python_model.py``) and a
link to the weight file: nothing of a model is described twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.triton.model_config import model_repository_dirs, parameters, read_config
from services.triton.python_model import LITERT, ONNX

PYTHON_MODEL = Path(__file__).resolve().parent / "python_model.py"


class ModelUnservable(ValueError):
    """A model folder this host cannot run (a file is missing, or its platform is unknown here)."""


@dataclass
class ModelPlan:
    """A model folder checked for serving: its parsed config, the runner kind and the weight file."""

    folder: Path
    config: object            # tritonclient.grpc.model_config_pb2.ModelConfig
    runner: str               # ONNX or LITERT
    model_file: Path

    @property
    def name(self) -> str:
        return self.config.name


def plan_model(folder: Path) -> ModelPlan:
    """Check one model folder: the config's name is the folder's, the platform is one we run, the
    weight file exists (else ``ModelUnservable`` naming it and how to make it)."""
    folder = Path(folder)
    config = read_config(folder / "config.pbtxt")
    if config.name and config.name != folder.name:
        raise ModelUnservable(f"{folder}/config.pbtxt names the model {config.name!r}; Triton wants the folder name")
    if not config.name:
        config.name = folder.name
    version_dir = folder / "1"
    if config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime":
        model_file = version_dir / (config.default_model_filename or "model.onnx")
        if not model_file.is_file():
            made_by = parameters(config).get("model_file_made_by")   # a model the set-up converts
            raise ModelUnservable(f"{model_file} is missing: run `{made_by}`" if made_by else
                                  f"{model_file} is missing: write it with `hpe3d models export NAME --weights FILE "
                                  f"--repository {folder.parent}`")
        return ModelPlan(folder, config, ONNX, model_file)
    if config.backend == "python" and "tflite_file" in parameters(config):
        from google.protobuf import json_format

        from services.triton.litert_runner import model_file as tflite_path
        path = tflite_path(json_format.MessageToDict(config, preserving_proto_field_name=True), version_dir)
        if not path.is_file():
            raise ModelUnservable(f"{path} is missing: run `make models` (python -m "
                                  "services.triton.blazepose.fetch_blazepose), or copy the .tflite file next to "
                                  "the model's model.py")
        return ModelPlan(folder, config, LITERT, path)
    raise ModelUnservable(f"{folder}: platform {config.platform or config.backend!r} is not served on the CPU "
                          "host (onnxruntime_onnx, or the python backend with a tflite_file)")


def plan_repositories(repositories: list[Path]) -> list[ModelPlan]:
    """Every model of every repository, in order; a name seen twice is an error."""
    plans: dict[str, ModelPlan] = {}
    for repository in repositories:
        if not Path(repository).is_dir():
            raise ModelUnservable(f"model repository {repository} is not a folder")
        for folder in model_repository_dirs(repository):
            plan = plan_model(folder)
            if plan.name in plans:
                raise ModelUnservable(f"model {plan.name} is in both {plans[plan.name].folder.parent} "
                                      f"and {repository}")
            plans[plan.name] = plan
    return list(plans.values())


def serving_config(plan: ModelPlan, num_threads: int):
    """The config tritonserver loads for ``plan``: the source config, run by our Python-backend model."""
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    config.CopyFrom(plan.config)
    config.platform = ""
    config.backend = "python"
    config.default_model_filename = ""            # the Python backend's file is model.py
    config.ClearField("optimization")             # TensorRT / GPU accelerators: the official image's business
    count = sum(group.count or 1 for group in plan.config.instance_group) or 1
    config.ClearField("instance_group")
    config.instance_group.add(count=count, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    config.parameters["hpe3d_runner"].string_value = plan.runner
    config.parameters["hpe3d_model_file"].string_value = plan.model_file.name
    config.parameters["num_threads"].string_value = str(num_threads)
    return config


def write_serving_repository(plans: list[ModelPlan], destination: Path, num_threads: int) -> Path:
    """Write the serving repository for ``plans`` into ``destination`` (an empty or new folder)."""
    from google.protobuf import text_format

    destination = Path(destination)
    for plan in plans:
        version_dir = destination / plan.name / "1"
        version_dir.mkdir(parents=True)
        (destination / plan.name / "config.pbtxt").write_text(
            f"# written by services/triton/serving_repository.py from {plan.folder / 'config.pbtxt'}\n"
            + text_format.MessageToString(serving_config(plan, num_threads)))
        (version_dir / "model.py").symlink_to(PYTHON_MODEL)
        (version_dir / plan.model_file.name).symlink_to(plan.model_file.resolve())
    return destination
