"""ONNX models (the exported HRNet / SimpleBaseline, ``platform: "onnxruntime_onnx"``) run by ONNX
Runtime on the CPU, for the PyTriton host: the official Triton image serves the same files with its
own ONNX Runtime backend (on the GPU, with TensorRT where the config asks for it)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np


class OnnxModelMissing(FileNotFoundError):
    """The model.onnx of a model folder is absent; the message names it and how to make it."""


class OnnxModel:
    """One ONNX Runtime session; ``infer`` takes and returns batches by tensor name (the names of the
    graph, which the model's config.pbtxt repeats). ONNX Runtime sessions are thread-safe. ``num_threads``
    is the intra-op pool (host setting ``triton_model_threads``); its idle threads do not spin."""

    def __init__(self, path: Path | str, num_threads: int = 2):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelMissing(f"{self.path} is missing: write it with `hpe3d models export NAME --weights FILE "
                                   f"--repository {self.path.parents[1]}`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning for the next op: on a machine whose cores the
        # other stages share, spinning burnt 60 % more CPU per detector call (bench/triton_hop.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def infer(self, inputs: dict[str, np.ndarray], outputs: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """``{input: [N, ...]}`` -> ``{output: [N, ...]}`` for the outputs asked for (all when None)."""
        wanted = [n for n in self.output_names if outputs is None or n in set(outputs)]
        values = self.session.run(wanted, {name: inputs[name] for name in self.input_names})
        return dict(zip(wanted, values))
