"""The two model repositories of this folder, and the weight files their models need.

* ``repository/`` -- what the PyTriton host serves on the CPU and the official image can serve too:
  BlazePose's .tflite models in the Python backend (``litert_runner.py``), and the person detector
  (NanoDet, ``person_detector/1/model.onnx`` written by ``make detector``) with ONNX Runtime.
* ``repository_gpu/`` -- the same model names and tensors for GPU nodes: BlazePose converted to ONNX
  (``tflite_to_onnx.py``) and the same person detector file, for Triton's ONNX Runtime backend.

Each model folder's ``config.pbtxt`` is the one description of the model; BlazePose's weight files lie
in ``blazepose/`` (``make models``) and the folders link to them.
"""
from __future__ import annotations

from pathlib import Path

from services.triton.model_config import model_repository_dirs, parameters, read_config

REPOSITORY_DIR = Path(__file__).resolve().parent / "repository"
GPU_REPOSITORY_DIR = REPOSITORY_DIR.parent / "repository_gpu"


def model_names(repository: str | Path = REPOSITORY_DIR) -> list[str]:
    """The names of a repository's models (its folders holding a config.pbtxt), sorted."""
    return [folder.name for folder in model_repository_dirs(repository)]


def missing_model_files(repository: str | Path = REPOSITORY_DIR) -> list[Path]:
    """The .tflite files the repository's LiteRT models name (``tflite_file``) that `make models`
    has not extracted yet."""
    from google.protobuf import json_format

    from services.triton.litert_runner import model_file

    missing = []
    for folder in model_repository_dirs(repository):
        config = read_config(folder / "config.pbtxt")
        if "tflite_file" in parameters(config):
            path = model_file(json_format.MessageToDict(config, preserving_proto_field_name=True), folder / "1")
            if not path.is_file():
                missing.append(path)
    return missing


def load_runner(name: str, num_threads: int = 2, repository: str | Path = REPOSITORY_DIR):
    """The runner the PyTriton host builds for model ``name`` of ``repository``, in this process (tools
    and tests without a server); ``host.ModelUnservable`` names a missing file."""
    from services.triton.host import load_model

    return load_model(Path(repository) / name, num_threads).runner
