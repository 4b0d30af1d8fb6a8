"""The 2D models run in this process, without a Triton server: for benchmarks (``bench/pose2d.py``'s
``local`` mode) and tests. Nothing deployed uses this module: the pose2d stage always calls Triton.

Each model is built from its folder in a model repository (``config.pbtxt`` + weights) with the runner
the Triton host uses (``services/triton``), and answers as the pose2d clients do
(``services/pose2d/client.py``, ``topdown_client.py``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import json_format

from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS, PERSON_DETECTOR
from services.pose2d.client import HEATMAP, LANDMARK_OUTPUTS, REGRESSORS, SCORES, BlazePoseInfo
from services.pose2d.person_detector import DetectorInfo, levels_joined
from services.pose2d.topdown_client import HEATMAPS, HeatmapModelInfo, model_input
from services.triton.model_config import read_config
from services.triton.repositories import REPOSITORY_DIR, load_runner


def config_json(folder: str | Path) -> dict:
    """A model folder's config.pbtxt as the JSON Triton's ``get_model_config(as_json=True)`` gives."""
    return json_format.MessageToDict(read_config(Path(folder) / "config.pbtxt"), preserving_proto_field_name=True)


def repository_blazepose_info(repository: str | Path = REPOSITORY_DIR) -> BlazePoseInfo:
    """What a server of ``repository`` would report of the BlazePose models (no weights needed)."""
    return BlazePoseInfo.from_configs(config_json(Path(repository) / BLAZEPOSE_DETECTOR),
                                      config_json(Path(repository) / BLAZEPOSE_LANDMARKS))


class LocalBlazePose:
    """The BlazePose models of the model repository run by LiteRT here (``BlazePoseModels``)."""

    def __init__(self, num_threads: int = 2, repository: str | Path = REPOSITORY_DIR):
        self.info = repository_blazepose_info(repository)
        self._detector = load_runner(BLAZEPOSE_DETECTOR, num_threads, repository)
        self._landmarks = load_runner(BLAZEPOSE_LANDMARKS, num_threads, repository)

    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._detector.infer({self.info.detector_input: images}, (REGRESSORS, SCORES))
        return out[REGRESSORS], out[SCORES]

    def landmarks(self, crops: np.ndarray, heatmap: bool = True) -> dict[str, np.ndarray]:
        return self._landmarks.infer({self.info.landmark_input: crops},
                                     LANDMARK_OUTPUTS + ((HEATMAP,) if heatmap else ()))

    def close(self) -> None:
        pass


class LocalPersonDetector:
    """The person detector of the model repository (``make detector``) run by ONNX Runtime here
    (``PersonDetectorModel``)."""

    def __init__(self, num_threads: int = 2, repository: str | Path = REPOSITORY_DIR):
        self.info = DetectorInfo.from_config(config_json(Path(repository) / PERSON_DETECTOR))
        self._runner = load_runner(PERSON_DETECTOR, num_threads, repository)

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return levels_joined(self.info, self._runner.infer({self.info.input_name: images}))

    def close(self) -> None:
        pass


class LocalTopDown:
    """An exported top-down model folder (``config.pbtxt`` + ``1/model.onnx``) run by ONNX Runtime
    here (``HeatmapModel``)."""

    def __init__(self, folder: str | Path, num_threads: int = 2):
        folder = Path(folder)
        self.info = HeatmapModelInfo.from_config(config_json(folder))
        self._runner = load_runner(folder.name, num_threads, folder.parent)

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        return self._runner.infer({self.info.input_name: model_input(self.info, crops)}, [HEATMAPS])[HEATMAPS]

    def close(self) -> None:
        pass
