"""Triton ``config.pbtxt`` files: read them into ``ModelConfig`` messages and write them.

A model's config.pbtxt is the one description of its name, tensors, batching and scales: the
official Triton image reads it, the PyTriton host (``host.py``) reads it, ``hpe3d models export``
writes it, and the pose2d stage learns every tensor from what the server reports of it. Parsing
uses Triton's own protobuf schema (``tritonclient.grpc.model_config_pb2``), so a file this module
accepts is one Triton accepts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

NUMPY_DTYPES = {"TYPE_FP32": np.float32, "TYPE_UINT8": np.uint8, "TYPE_FP16": np.float16, "TYPE_INT32": np.int32}


def read_config(path: str | Path):
    """``config.pbtxt`` -> ``ModelConfig`` message; a file Triton would refuse raises ValueError
    naming it."""
    from tritonclient.grpc import model_config_pb2

    path = Path(path)
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"{path} is not a valid Triton model config: {exc}") from exc


def numpy_dtype(config_type) -> type:
    """A tensor's numpy dtype from its ``DataType`` enum value (or name)."""
    from tritonclient.grpc import model_config_pb2

    name = config_type if isinstance(config_type, str) else model_config_pb2.DataType.Name(config_type)
    try:
        return NUMPY_DTYPES[name]
    except KeyError:
        raise ValueError(f"unsupported tensor type {name}") from None


def parameters(config) -> dict[str, str]:
    """The ``parameters { key: ... value: { string_value: ... } }`` entries as a dict."""
    return {key: value.string_value for key, value in config.parameters.items()}


def model_repository_dirs(repository: str | Path) -> list[Path]:
    """The model folders of a repository: sub-folders holding a config.pbtxt, sorted by name."""
    root = Path(repository)
    return sorted(p for p in root.iterdir() if (p / "config.pbtxt").is_file()) if root.is_dir() else []
