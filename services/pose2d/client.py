"""The two BlazePose models as the estimator sees them: batch of images in, raw outputs out.

``TritonBlazePose`` calls a Triton Inference Server over gRPC (the project's Triton host on a laptop, the official
image on GPU nodes). Every tensor's name and shape comes from the config the server reports for
the model (its ``config.pbtxt`` in ``services/triton/repository``), read into ``BlazePoseInfo``,
which also checks that the images are UINT8 as sent. This client names only the Triton models
(``services/common/pose_models.py``) and the outputs it reads, as the top-down client names
``heatmaps``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS
from services.pose2d.blazepose import VALUES_PER_LANDMARK, ssd_anchors
from services.pose2d.triton_errors import triton_error
from services.pose2d.triton_shm import TritonTensors

REGRESSORS, SCORES = "regressors", "scores"              # the detector's outputs this client reads
LANDMARKS, POSE_FLAG, HEATMAP = "landmarks", "pose_flag", "heatmap"   # the landmark model's
LANDMARK_OUTPUTS = (LANDMARKS, POSE_FLAG)


@dataclass(frozen=True)
class BlazePoseInfo:
    """What the served BlazePose models take and give, from their configs: each model's one image
    input (its name and square side; UINT8 RGB pixels, which the served model scales) and batch
    limit; the detector's anchor count; the landmark model's landmark count and heatmap side."""

    detector_input: str
    detector_size: int
    num_anchors: int
    detector_max_batch: int
    landmark_input: str
    landmark_size: int
    num_landmarks: int
    heatmap_size: int
    landmark_max_batch: int

    @classmethod
    def from_configs(cls, detector: dict, landmarks: dict) -> "BlazePoseInfo":
        """From the two model configs as JSON (Triton's ``get_model_config(as_json=True)``, or a
        parsed config.pbtxt); ValueError naming what does not fit."""
        det_name, det_size = _square_image(detector)
        regressors, scores = _outputs(detector, REGRESSORS, SCORES)
        if len(regressors) != 2 or scores != [regressors[0], 1]:
            raise ValueError(f"model {detector.get('name')!r}: {REGRESSORS} {regressors} and {SCORES} {scores} "
                             "are not [anchors, values] and [anchors, 1]")
        if len(ssd_anchors(det_size)) != regressors[0]:
            raise ValueError(f"model {detector.get('name')!r}: {regressors[0]} anchors, but MediaPipe's SSD anchors "
                             f"for a {det_size}-pixel input are {len(ssd_anchors(det_size))}")
        lm_name, lm_size = _square_image(landmarks)
        values, flag, heatmap = _outputs(landmarks, LANDMARKS, POSE_FLAG, HEATMAP)
        if len(heatmap) != 3 or heatmap[0] != heatmap[1] or values != [heatmap[2] * VALUES_PER_LANDMARK] \
                or flag != [1]:
            raise ValueError(f"model {landmarks.get('name')!r}: {LANDMARKS} {values}, {POSE_FLAG} {flag} and "
                             f"{HEATMAP} {heatmap} are not [L x {VALUES_PER_LANDMARK}], [1] and [H, H, L]")
        return cls(det_name, det_size, regressors[0], int(detector.get("max_batch_size") or 1),
                   lm_name, lm_size, heatmap[2], heatmap[0], int(landmarks.get("max_batch_size") or 1))


def _square_image(config: dict) -> tuple[str, int]:
    inputs = config.get("input", [])
    dims = [int(d) for d in inputs[0].get("dims", [])] if len(inputs) == 1 else []
    if len(dims) != 3 or dims[0] != dims[1] or dims[2] != 3 or inputs[0].get("data_type") != "TYPE_UINT8":
        raise ValueError(f"model {config.get('name')!r} does not take one square UINT8 RGB image [S, S, 3]: "
                         f"{inputs}")
    return inputs[0]["name"], dims[0]


def _outputs(config: dict, *names: str) -> list[list[int]]:
    dims = {o.get("name"): [int(d) for d in o.get("dims", [])] for o in config.get("output", [])}
    missing = [n for n in names if n not in dims]
    if missing:
        raise ValueError(f"model {config.get('name')!r} has no output {', '.join(missing)} (it has {sorted(dims)})")
    return [dims[n] for n in names]


class BlazePoseModels(Protocol):
    info: BlazePoseInfo

    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Letterboxed RGB uint8 ``[N, S, S, 3]`` (S = ``info.detector_size``) -> regressors
        ``[N, anchors, 12]``, scores ``[N, anchors, 1]``."""

    def landmarks(self, crops: np.ndarray, heatmap: bool = True) -> dict[str, np.ndarray]:
        """RGB uint8 crops ``[N, S, S, 3]`` (S = ``info.landmark_size``) -> ``landmarks`` and
        ``pose_flag`` (and ``heatmap`` when asked), shaped as the model config says."""


class TritonBlazePose:
    """A Triton gRPC client for the BlazePose detector and landmark models.

    Thread-safe: one instance serves every concurrent Estimate call (Triton's dynamic batcher then
    merges their requests). Tensors travel in system shared memory when the server is on this host
    (``triton_shm``, setting ``triton_shared_memory``; ``shared_memory`` overrides it), else in the
    gRPC messages. The models' configs are asked for on first use and kept. Failed requests
    raise the errors of ``triton_errors.triton_error``: ``DependencyUnavailable`` for an outage,
    ``ModelNotServed`` for a server that never served a model, ``TritonRequestRefused`` otherwise.
    """

    def __init__(self, url: str, timeout_s: float = 60.0, shared_memory: str | None = None):
        import tritonclient.grpc as tgrpc

        self._tgrpc = tgrpc
        self.url = url
        self.timeout_s = timeout_s
        self._client = tgrpc.InferenceServerClient(url)
        self.tensors = TritonTensors(self._client, tgrpc, url, shared_memory)
        self._info: BlazePoseInfo | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.tensors.close()
        self._client.close()

    def ready(self) -> bool:
        try:
            return self._client.is_server_ready(client_timeout=2) and all(
                self._client.is_model_ready(name, client_timeout=2) for name in (BLAZEPOSE_DETECTOR,
                                                                                 BLAZEPOSE_LANDMARKS))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    @property
    def info(self) -> BlazePoseInfo:
        """The models' tensors, from the configs the server reports (asked once)."""
        with self._lock:
            if self._info is None:
                from tritonclient.utils import InferenceServerException

                configs = []
                for model in (BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS):
                    try:
                        configs.append(self._client.get_model_config(model, as_json=True,
                                                                     client_timeout=self.timeout_s)["config"])
                    except InferenceServerException as exc:
                        raise triton_error(exc, self.url, model, served_before=False) from exc
                self._info = BlazePoseInfo.from_configs(*configs)
            return self._info

    def _infer(self, model: str, input_name: str, max_batch: int, images: np.ndarray,
               outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        from tritonclient.utils import InferenceServerException

        results: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        step = max(1, max_batch)
        for start in range(0, len(images), step):
            chunk = np.ascontiguousarray(images[start:start + step], dtype=np.uint8)
            try:
                reply = self.tensors.infer(model, {input_name: chunk}, outputs, self.timeout_s)
            except InferenceServerException as exc:
                raise triton_error(exc, self.url, model, served_before=True) from exc
            for name in outputs:
                results[name].append(reply[name])
        return {name: parts[0] if len(parts) == 1 else np.concatenate(parts) for name, parts in results.items()}

    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        info = self.info
        out = self._infer(BLAZEPOSE_DETECTOR, info.detector_input, info.detector_max_batch, images,
                          (REGRESSORS, SCORES))
        return out[REGRESSORS], out[SCORES]

    def landmarks(self, crops: np.ndarray, heatmap: bool = True) -> dict[str, np.ndarray]:
        info = self.info
        return self._infer(BLAZEPOSE_LANDMARKS, info.landmark_input, info.landmark_max_batch, crops,
                           LANDMARK_OUTPUTS + ((HEATMAP,) if heatmap else ()))

