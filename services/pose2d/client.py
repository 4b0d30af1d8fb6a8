"""The two BlazePose models as the estimator sees them: batch of images in, raw outputs out.

``TritonBlazePose`` calls a Triton Inference Server over gRPC (PyTriton on a laptop, the official
image on GPU nodes: same names and tensors). ``LocalBlazePose`` runs the same LiteRT runner in this
process, for tests and tools that have no server.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from services.common.errors import DependencyUnavailable
from services.pose2d.models import DETECTOR, LANDMARKS, MAX_BATCH_SIZE, ModelSpec, load_runner

LANDMARK_OUTPUTS = ("landmarks", "pose_flag")


class BlazePoseModels(Protocol):
    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 ``[N, 224, 224, 3]`` -> regressors ``[N, 2254, 12]``, scores ``[N, 2254, 1]``."""

    def landmarks(self, crops: np.ndarray, heatmap: bool = True) -> dict[str, np.ndarray]:
        """RGB uint8 ``[N, 256, 256, 3]`` -> ``landmarks`` [N, 195], ``pose_flag`` [N, 1] (and
        ``heatmap`` [N, 64, 64, 39] when asked)."""


class TritonBlazePose:
    """A Triton gRPC client for ``blazepose_detector`` and ``blazepose_landmarks``.

    Thread-safe: one instance serves every concurrent Estimate call (Triton's dynamic batcher then
    merges their requests). An unreachable server, or one that does not serve the models, raises
    ``DependencyUnavailable``.
    """

    def __init__(self, url: str, timeout_s: float = 60.0, max_batch_size: int = MAX_BATCH_SIZE):
        import tritonclient.grpc as tgrpc

        self._tgrpc = tgrpc
        self.url = url
        self.timeout_s = timeout_s
        self.max_batch_size = max_batch_size
        self._client = tgrpc.InferenceServerClient(url)

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        try:
            return self._client.is_server_ready(client_timeout=2) and all(
                self._client.is_model_ready(name, client_timeout=2) for name in (DETECTOR.name, LANDMARKS.name))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    def _infer(self, spec: ModelSpec, images: np.ndarray, outputs: tuple[str, ...]) -> dict[str, np.ndarray]:
        from tritonclient.utils import InferenceServerException

        image = spec.inputs[0]
        model = spec.name
        results: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
        for start in range(0, len(images), self.max_batch_size):
            chunk = np.ascontiguousarray(images[start:start + self.max_batch_size], dtype=image.dtype)
            tensor = self._tgrpc.InferInput(image.name, list(chunk.shape), image.wire_dtype)
            tensor.set_data_from_numpy(chunk)
            try:
                reply = self._client.infer(model, [tensor],
                                           outputs=[self._tgrpc.InferRequestedOutput(n) for n in outputs],
                                           client_timeout=self.timeout_s)
            except InferenceServerException as exc:
                raise _as_domain_error(exc, self.url, model) from exc
            for name in outputs:
                results[name].append(reply.as_numpy(name))
        return {name: parts[0] if len(parts) == 1 else np.concatenate(parts) for name, parts in results.items()}

    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._infer(DETECTOR, images, ("regressors", "scores"))
        return out["regressors"], out["scores"]

    def landmarks(self, crops: np.ndarray, heatmap: bool = True) -> dict[str, np.ndarray]:
        return self._infer(LANDMARKS, crops, LANDMARK_OUTPUTS + (("heatmap",) if heatmap else ()))


def _as_domain_error(exc: Exception, url: str, model: str) -> Exception:
    status = str(getattr(exc, "status", lambda: "")() or "")
    text = str(exc)
    down = ("UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status or "NOT_FOUND" in status
            or "unknown model" in text or "not ready" in text or "failed to connect" in text.lower())
    if down:
        return DependencyUnavailable(f"Triton at {url} cannot run {model}: {text}")
    return RuntimeError(f"Triton at {url} failed on {model}: {text}")


class LocalBlazePose:
    """The same models in this process, through the LiteRT runner (no server)."""

    def __init__(self, num_threads: int = 2):
        self._detector = load_runner(DETECTOR, num_threads=num_threads)
        self._landmarks = load_runner(LANDMARKS, num_threads=num_threads)

    def detect(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._detector.infer({"image": images}, ("regressors", "scores"))
        return out["regressors"], out["scores"]

    def landmarks(self, crops: np.ndarray, heatmap: bool = True) -> dict[str, np.ndarray]:
        return self._landmarks.infer({"image": crops}, LANDMARK_OUTPUTS + (("heatmap",) if heatmap else ()))

    def close(self) -> None:
        pass
