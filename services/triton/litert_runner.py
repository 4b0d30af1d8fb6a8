"""BlazePose .tflite models run by LiteRT, behind Triton: the one implementation both hosts use.

* The official Triton image (Python backend) loads ``repository/<model>/1/model.py``, which imports
  this file through the link ``repository/<model>/litert_runner.py`` and exposes
  ``TritonPythonModel``: it reads the tensor names, dims and .tflite tensor names from the model's
  ``config.pbtxt``.
* The PyTriton host (``services/triton/host.py``) builds ``LiteRTModel`` from the same config.pbtxt
  (``bindings_from_config``), and so do in-process users (``repositories.load_runner``).

Needs numpy and ``ai-edge-litert`` only (it runs inside the Triton image) and imports nothing of
this project: Triton copies each model folder of an ``s3://`` repository on its own to a temporary
directory, so a model can only use what lies inside its own folder (an upload follows the links).

The served tensors (names, dims, dtypes) and the .tflite tensor each one is bound to
(``tflite_tensors``) are those of the model's config.pbtxt; at load the runner checks that every
bound .tflite tensor is float32 with the config's dims and a batch of one, and refuses the file
otherwise, naming the tensor.

A batch runs one sample at a time: ``resize_tensor_input`` to [N, ...] is accepted by the detector
but its final reshape folds the batch into the anchor axis ([1, N x anchors, 12]), and a batched call
is no faster per sample on the CPU (XNNPACK).
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_THREADS = 2
# Where `make models` puts the .tflite files in a checkout (services/triton/blazepose).
CHECKOUT_MODELS = Path(__file__).resolve().parent / "blazepose"


class ModelFileMissing(FileNotFoundError):
    """A .tflite file is absent; the message names it and how to get it."""


@dataclass(frozen=True)
class Binding:
    """A Triton tensor (name, dims without batch, dtype on the wire) bound to a float32 tensor of
    the .tflite file."""

    name: str
    tflite_name: str
    dims: tuple[int, ...]
    dtype: str = "float32"


class LiteRTModel:
    """One LiteRT interpreter; ``infer`` takes and returns batches by Triton tensor name. Inputs
    (any dtype, e.g. uint8 pixels) reach the model as float32 ``value * input_scale + input_offset``.
    Thread-safe: calls are serialised (an interpreter is not re-entrant)."""

    def __init__(self, path: Path | str, inputs: Sequence[Binding], outputs: Sequence[Binding],
                 num_threads: int = DEFAULT_THREADS, input_scale: float = 1.0, input_offset: float = 0.0):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileMissing(
                f"{self.path} is missing: run `make models` (python -m services.triton.blazepose.fetch_blazepose), "
                "or copy the .tflite file next to the model's model.py")
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.input_scale = np.float32(input_scale)
        self.input_offset = np.float32(input_offset)
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._lock = threading.Lock()
        self._in = self._match(self.inputs, self.interpreter.get_input_details())
        self._out = self._match(self.outputs, self.interpreter.get_output_details())

    def _match(self, bindings: Sequence[Binding], details) -> dict[str, int]:
        by_name = {d["name"]: d for d in details}
        indices = {}
        for b in bindings:
            d = by_name.get(b.tflite_name)
            if d is None:
                raise ValueError(f"{self.path.name} has no tensor {b.tflite_name!r} (for {b.name}); "
                                 f"it has {sorted(by_name)}")
            if tuple(int(x) for x in d["shape"]) != (1, *b.dims) or np.dtype(d["dtype"]) != np.float32:
                raise ValueError(f"{self.path.name}: {b.tflite_name} is {np.dtype(d['dtype'])}{list(d['shape'])}, "
                                 f"expected float32{[1, *b.dims]} for {b.name}")
            indices[b.name] = d["index"]
        return indices

    def infer(self, inputs: dict[str, np.ndarray], outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """``{input: [N, *dims]}`` -> ``{output: [N, *dims]}`` for the outputs asked for (all when
        None; unknown names are ignored)."""
        wanted = [b for b in self.outputs if outputs is None or b.name in set(outputs)]
        batch = None
        scaled = {}
        for b in self.inputs:
            array = inputs[b.name]
            if tuple(array.shape[1:]) != b.dims:
                raise ValueError(f"{b.name}: expected [N, {', '.join(map(str, b.dims))}], got {list(array.shape)}")
            batch = array.shape[0] if batch is None else batch
            x = array.astype(np.float32)            # a new array: the caller's stays untouched
            if self.input_scale != 1:
                x *= self.input_scale
            if self.input_offset != 0:
                x += self.input_offset
            scaled[b.name] = x
        result = {b.name: np.empty((batch, *b.dims), np.float32) for b in wanted}
        with self._lock:
            for i in range(batch):
                for b in self.inputs:
                    self.interpreter.set_tensor(self._in[b.name], scaled[b.name][i:i + 1])
                self.interpreter.invoke()
                for b in wanted:
                    result[b.name][i] = self.interpreter.get_tensor(self._out[b.name])[0]
        return result


# -- Triton Python backend ---------------------------------------------------------------------------
def string_parameters(config: dict) -> dict[str, str]:
    """A model config's ``parameters`` (as Triton hands it, JSON) as ``{key: string_value}``."""
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


_DTYPES = {"TYPE_FP32": "float32", "TYPE_UINT8": "uint8"}


def bindings_from_config(config: dict) -> tuple[list[Binding], list[Binding]]:
    """Inputs and outputs of a Triton model config (as JSON), bound to .tflite tensors by the
    ``tflite_tensors`` parameter: ``"image=input_1,regressors=Identity,..."``."""
    mapping = dict(item.split("=", 1) for item in string_parameters(config)["tflite_tensors"].replace(" ", "").split(","))

    def bind(tensors) -> list[Binding]:
        return [Binding(t["name"], mapping[t["name"]], tuple(int(d) for d in t["dims"]),
                        _DTYPES[t.get("data_type", "TYPE_FP32")]) for t in tensors]
    return bind(config["input"]), bind(config["output"])


def input_scaling(config: dict) -> tuple[float, float]:
    """(``input_scale``, ``input_offset``) parameters: the .tflite input = wire value x scale + offset."""
    params = string_parameters(config)
    return float(params.get("input_scale") or 1.0), float(params.get("input_offset") or 0.0)


def model_file(config: dict, version_dir: Path) -> Path:
    """The .tflite file named by the ``tflite_file`` parameter: next to model.py (where the upload
    puts it), else in $HPE3D_BLAZEPOSE_DIR, else where `make models` puts it in a checkout."""
    name = string_parameters(config)["tflite_file"]
    candidates = [version_dir / name]
    if os.environ.get("HPE3D_BLAZEPOSE_DIR"):
        candidates.append(Path(os.environ["HPE3D_BLAZEPOSE_DIR"]) / name)
    candidates.append(CHECKOUT_MODELS / name)
    return next((c for c in candidates if c.is_file()), candidates[0])


class TritonPythonModel:
    """Triton Python-backend model over ``LiteRTModel``; dynamic batching hands it several
    requests at once, each answered with the outputs it asked for."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args.get("model_version", "1")
        inputs, outputs = bindings_from_config(config)
        threads = int(string_parameters(config).get("num_threads") or DEFAULT_THREADS)
        scale, offset = input_scaling(config)
        self.runner = LiteRTModel(model_file(config, version_dir), inputs, outputs, num_threads=threads,
                                  input_scale=scale, input_offset=offset)

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                data = {b.name: pb_utils.get_input_tensor_by_name(request, b.name).as_numpy()
                        for b in self.runner.inputs}
                out = self.runner.infer(data, request.requested_output_names() or None)
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, value) for name, value in out.items()]))
            except Exception as exc:  # noqa: BLE001 - reported to the caller of this request only
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses

    def finalize(self) -> None:
        self.runner = None
