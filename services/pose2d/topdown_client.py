"""A top-down heatmap model (HRNet, SimpleBaseline) as the pose2d stage sees it: RGB crops in,
heatmaps out. Everything about the model -- input name, dtype and size, output size, batch limit --
comes from the config the server reports (the model's config.pbtxt), nothing from a table here.

``TritonTopDown`` calls a Triton server over gRPC (the project's Triton host on a laptop, the official image on GPU
nodes); ``bench/local_models.py`` runs an exported model folder in a tool's own process with ONNX
Runtime (benchmarks and tests without a server).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.common.errors import DependencyUnavailable
from services.common.pose_models import IMAGENET_MEAN, IMAGENET_STD
from services.pose2d.triton_errors import triton_error
from services.pose2d.triton_shm import TritonTensors

HEATMAPS = "heatmaps"
MAX_IN_FLIGHT = 4     # concurrent requests of one call: Triton's dynamic batcher fills the GPU with them


@dataclass(frozen=True)
class HeatmapModelInfo:
    """What a served top-down model takes and gives: ``input_dtype`` "uint8" (raw RGB [H, W, 3]) or
    "float32" (ImageNet-normalised RGB [3, H, W]); crops ``width`` x ``height``; heatmaps
    ``joints`` x ``heatmap_height`` x ``heatmap_width``."""

    name: str
    input_name: str
    input_dtype: str
    width: int
    height: int
    joints: int
    heatmap_width: int
    heatmap_height: int
    max_batch_size: int

    @classmethod
    def from_config(cls, config: dict) -> "HeatmapModelInfo":
        """From a model config as JSON (Triton's ``get_model_config(as_json=True)``, or a parsed
        config.pbtxt); ValueError when it is not a top-down heatmap model."""
        inputs, outputs = config.get("input", []), config.get("output", [])
        heat = [o for o in outputs if o.get("name") == HEATMAPS]
        if len(inputs) != 1 or not heat:
            raise ValueError(f"model {config.get('name')!r} is not a top-down heatmap model "
                             "(one input and an output named 'heatmaps')")
        image = inputs[0]
        dims = [int(d) for d in image["dims"]]
        dtype = {"TYPE_UINT8": "uint8", "TYPE_FP32": "float32"}.get(image.get("data_type", ""), "")
        if dtype == "uint8" and len(dims) == 3 and dims[2] == 3:
            height, width = dims[0], dims[1]
        elif dtype == "float32" and len(dims) == 3 and dims[0] == 3:
            height, width = dims[1], dims[2]
        else:
            raise ValueError(f"model {config.get('name')!r}: input {image.get('name')} {image.get('data_type')} "
                             f"{dims} is neither UINT8 [H, W, 3] nor FP32 [3, H, W]")
        joints, hh, hw = (int(d) for d in heat[0]["dims"])
        return cls(config["name"], image["name"], dtype, width, height, joints, hw, hh,
                   int(config.get("max_batch_size") or 1))


class HeatmapModel(Protocol):
    info: HeatmapModelInfo

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """RGB uint8 crops ``[N, height, width, 3]`` -> float32 ``[N, joints, heatmap_h, heatmap_w]``."""


def model_input(info: HeatmapModelInfo, crops: np.ndarray) -> np.ndarray:
    """Crops as the model's input tensor wants them (raw bytes, or normalised channels-first floats)."""
    if info.input_dtype == "uint8":
        return np.ascontiguousarray(crops, dtype=np.uint8)
    x = crops.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class TritonTopDown:
    """A Triton gRPC client for one top-down model (tensors in shared memory as ``client.TritonBlazePose``
    says). A model the server does not have ready raises
    ``LookupError`` at construction; failed requests raise the errors of ``triton_errors.triton_error``
    (``DependencyUnavailable`` only for an outage)."""

    def __init__(self, url: str, name: str, timeout_s: float = 120.0, shared_memory: str | None = None):
        import tritonclient.grpc as tgrpc
        from tritonclient.utils import InferenceServerException

        self._tgrpc = tgrpc
        self.url = url
        self.timeout_s = timeout_s
        self._client = tgrpc.InferenceServerClient(url)
        try:
            ready = self._client.is_model_ready(name, client_timeout=15)
            if not ready:
                raise LookupError(f"Triton at {url} has no ready model {name!r}")
            config = self._client.get_model_config(name, as_json=True, client_timeout=15)["config"]
        except InferenceServerException as exc:
            self._client.close()
            raise triton_error(exc, url, name, served_before=False) from exc
        except LookupError:
            self._client.close()
            raise
        self.info = HeatmapModelInfo.from_config(config)
        self.tensors = TritonTensors(self._client, tgrpc, url, shared_memory)

    def close(self) -> None:
        self.tensors.close()
        self._client.close()

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        try:
            return self.tensors.infer(self.info.name, {self.info.input_name: batch}, (HEATMAPS,),
                                      self.timeout_s)[HEATMAPS]
        except InferenceServerException as exc:
            raise triton_error(exc, self.url, self.info.name, served_before=True) from exc

    def heatmaps(self, crops: np.ndarray) -> np.ndarray:
        """All crops, sent as requests of at most ``max_batch_size``, up to ``MAX_IN_FLIGHT`` at once."""
        x = model_input(self.info, crops)
        step = max(1, self.info.max_batch_size)
        chunks = [x[i:i + step] for i in range(0, len(x), step)]
        if len(chunks) == 1:
            return self._infer(chunks[0])
        with ThreadPoolExecutor(max_workers=min(MAX_IN_FLIGHT, len(chunks))) as pool:
            return np.concatenate(list(pool.map(self._infer, chunks)))


def ready_models(url: str, names: tuple[str, ...] | list[str]) -> set[str]:
    """Which of ``names`` the Triton server at ``url`` has ready; ``DependencyUnavailable`` when the
    server does not answer."""
    import tritonclient.grpc as tgrpc
    from tritonclient.utils import InferenceServerException

    client = tgrpc.InferenceServerClient(url)
    try:
        if not client.is_server_live(client_timeout=15):
            raise DependencyUnavailable(f"Triton at {url} is not live")
        return {name for name in names if client.is_model_ready(name, client_timeout=15)}
    except InferenceServerException as exc:
        raise DependencyUnavailable(f"Triton at {url} did not answer: {exc}") from exc
    finally:
        client.close()
