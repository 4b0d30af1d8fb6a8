"""The CPU host's model for Triton's Python backend: our runners inside the backend's stub process.

``tritonserver`` starts one stub process per model instance and hands it the requests through the
Python backend's shared memory; this model runs them with ONNX Runtime (``onnx_runner.py``) or LiteRT
(``litert_runner.py``) right there, so a request crosses one process boundary (server -> stub) and
no more. The serving repository (``serving_repository.py``) links this file as each model's
``1/model.py`` and adds to the source config.pbtxt the parameters read here:

* ``hpe3d_runner``      ``onnx`` or ``litert``;
* ``hpe3d_model_file``  the weight file's name in the version folder (a link to the source file);
* ``num_threads``       the runner's CPU threads (the host's ``--threads``).

The requests of one dynamic batch that ask for the same outputs run as one batch; each request gets
its own error when its tensors are wrong.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]      # services/triton/python_model.py -> the checkout
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

ONNX, LITERT = "onnx", "litert"        # the runners (``hpe3d_runner``)


def make_runner(kind: str, model_file: Path, config: dict, num_threads: int):
    """Our runner of ``kind`` (``onnx`` or ``litert``) for ``model_file``; ``config`` the model's config as
    JSON (LiteRT reads its tensor bindings and input scaling there). The one place both hosts build a runner:
    this stub and the PyTriton host (``host.build_model``)."""
    if kind == ONNX:
        from services.triton.onnx_runner import OnnxModel
        return OnnxModel(model_file, num_threads)
    if kind == LITERT:
        from services.triton.litert_runner import LiteRTModel, bindings_from_config, input_scaling
        inputs, outputs = bindings_from_config(config)
        scale, offset = input_scaling(config)
        return LiteRTModel(model_file, inputs, outputs, num_threads=num_threads, input_scale=scale,
                           input_offset=offset)
    raise ValueError(f"unknown runner {kind!r} ({ONNX} or {LITERT})")


def build_runner(config: dict, version_dir: Path):
    """The runner a serving config asks for (``config`` as Triton hands it: JSON)."""
    from services.triton.litert_runner import string_parameters

    params = string_parameters(config)
    return make_runner(params["hpe3d_runner"], version_dir / params["hpe3d_model_file"], config,
                       int(params.get("num_threads") or 2))


def run_batched(runner, requests: list[tuple[dict[str, np.ndarray], tuple[str, ...] | None]]):
    """``[(inputs, outputs asked for)]`` -> per request ``dict`` of outputs or the exception it raised.
    Requests asking for the same outputs whose inputs agree in everything but the batch run together."""
    results: list = [None] * len(requests)
    groups: dict = {}
    for i, (inputs, outputs) in enumerate(requests):
        key = (outputs, tuple((name, a.shape[1:], a.dtype.str) for name, a in sorted(inputs.items())))
        groups.setdefault(key, []).append(i)
    for (outputs, _), members in groups.items():
        if len(members) > 1:
            try:
                names = requests[members[0]][0].keys()
                joined = {n: np.concatenate([requests[i][0][n] for i in members]) for n in names}
                out = runner.infer(joined, outputs)
                start = 0
                for i in members:
                    n = len(next(iter(requests[i][0].values())))
                    results[i] = {k: v[start:start + n] for k, v in out.items()}
                    start += n
                continue
            except Exception:  # noqa: BLE001 - one bad request must not fail its neighbours: run them alone
                pass
        for i in members:
            try:
                results[i] = runner.infer(*requests[i])
            except Exception as exc:  # noqa: BLE001 - reported to the caller of this request only
                results[i] = exc
    return results


class TritonPythonModel:
    """Triton's Python-backend interface over ``build_runner``'s runner."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args.get("model_version", "1")
        self.input_names = [t["name"] for t in config["input"]]
        self.runner = build_runner(config, version_dir)

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        batch = []
        for request in requests:
            inputs = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
            batch.append((inputs, tuple(request.requested_output_names()) or None))
        responses = []
        for result in run_batched(self.runner, batch):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(output_tensors=[],
                                                            error=pb_utils.TritonError(str(result))))
            else:
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, np.ascontiguousarray(value))
                                    for name, value in result.items()]))
        return responses

    def finalize(self) -> None:
        self.runner = None
