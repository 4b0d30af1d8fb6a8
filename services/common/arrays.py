"""The array codec: numpy arrays <-> ``hpe3d.v1.FloatArray`` (shape + row-major float32 values).

Every array that crosses a process boundary or lands in object storage goes through these two
functions, inside a protobuf message. No pickles anywhere.
"""
from __future__ import annotations

import numpy as np

from hpe3d.v1 import common_pb2


def to_proto(array: np.ndarray) -> common_pb2.FloatArray:
    a = np.ascontiguousarray(array, dtype=np.float32)
    msg = common_pb2.FloatArray(shape=list(a.shape))
    msg.values.extend(a.ravel().tolist())
    return msg


def from_proto(msg: common_pb2.FloatArray) -> np.ndarray:
    shape = tuple(msg.shape)
    values = np.asarray(msg.values, dtype=np.float32)
    expected = int(np.prod(shape)) if shape else 0
    if values.size != expected:
        raise ValueError(f"FloatArray has {values.size} values but shape {shape} needs {expected}")
    return values.reshape(shape)
