"""An exported top-down model folder run in this process (ONNX Runtime), for tools and tests that
have no Triton server; the stage itself always calls Triton (``topdown_client.TritonTopDown``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from services.pose2d.topdown_client import HEATMAPS, HeatmapModelInfo, model_input


class LocalTopDown:
    """An exported model folder (``config.pbtxt`` + ``1/model.onnx``) run by ONNX Runtime here."""

    def __init__(self, folder: str | Path, num_threads: int = 2):
        import onnxruntime as ort
        from google.protobuf import json_format

        from services.pose2d.models.model_config import read_config

        folder = Path(folder)
        config = read_config(folder / "config.pbtxt")
        self.info = HeatmapModelInfo.from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        self._session = ort.InferenceSession(str(folder / "1" / "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        return self._session.run([HEATMAPS], {self.info.input_name: model_input(self.info, crops)})[0]

    def close(self) -> None:
        pass
