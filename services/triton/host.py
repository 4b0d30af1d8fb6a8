"""A Triton Inference Server on the CPU (PyTriton) that serves Triton model repositories.

    python -m services.triton.host [--repository DIR ...] --grpc-port 8001 --http-port 8000 --metrics-port 8002

Every model folder of every ``--repository`` (default: ``services/triton/repository``, the BlazePose
models, plus the comma-separated folders of ``HPE3D_TRITON_REPOSITORIES``, e.g. the one
``hpe3d models export`` writes HRNet / SimpleBaseline into) is served
under the name, tensors, max batch size and queue delay of its ``config.pbtxt`` -- the same file
the official Triton image reads on GPU nodes, so the pose2d stage cannot tell which server it talks
to. The config's platform decides what runs the model here:

* ``platform: "onnxruntime_onnx"``: ``1/model.onnx`` (or ``default_model_filename``) in ONNX Runtime
  on the CPU (``onnx_runner.py``); the config's GPU instance group and TensorRT accelerator only
  matter to the official image;
* ``backend: "python"`` with a ``tflite_file`` parameter (BlazePose): the LiteRT runner
  (``litert_runner.py``), the same code the official image's Python backend loads.

PyTriton runs the real ``tritonserver`` binary, whose Python-backend stub links ``libpython3.11``.
On machines where the dynamic loader would pick another build of that library than this
interpreter's (e.g. Debian's beside pyenv's), model loading fails with
``'_thread.RLock' object has no attribute '_recursion_count'``; this host therefore puts this
interpreter's ``LIBDIR`` first on ``LD_LIBRARY_PATH`` before it starts the server (the server and
the stub inherit it).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import Settings
from services.triton.model_config import model_repository_dirs, numpy_dtype, parameters, read_config
from services.triton.repositories import REPOSITORY_DIR

log = logging.getLogger("services.triton.host")


class ModelUnservable(ValueError):
    """A model folder this host cannot run (a file is missing, or its platform is unknown here)."""


@dataclass
class HostedModel:
    """A model folder ready to bind: its parsed config and the runner that computes it."""

    folder: Path
    config: object            # tritonclient.grpc.model_config_pb2.ModelConfig
    runner: object            # .infer(inputs: dict, outputs: list | None) -> dict

    @property
    def name(self) -> str:
        return self.config.name


def ensure_libpython_first() -> str:
    """Prepend this interpreter's LIBDIR to LD_LIBRARY_PATH (for the child processes); returns it."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir and (not current or current[0] != libdir):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + [p for p in current if p != libdir])
    return libdir


def load_model(folder: Path, num_threads: int = 2) -> HostedModel:
    """The runner for one model folder, chosen by its config.pbtxt; raises ``ModelUnservable`` naming
    the missing file or the unknown platform."""
    from google.protobuf import json_format

    config = read_config(folder / "config.pbtxt")
    if config.name and config.name != folder.name:
        raise ModelUnservable(f"{folder}/config.pbtxt names the model {config.name!r}; Triton wants the folder name")
    if not config.name:
        config.name = folder.name
    version_dir = folder / "1"
    if config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime":
        from services.triton.onnx_runner import OnnxModel, OnnxModelMissing
        model_file = version_dir / (config.default_model_filename or "model.onnx")
        try:
            runner = OnnxModel(model_file, num_threads)
        except OnnxModelMissing as exc:
            made_by = parameters(config).get("model_file_made_by")   # a model the set-up converts
            raise ModelUnservable(f"{model_file} is missing: run `{made_by}`" if made_by else str(exc)) from exc
    elif config.backend == "python" and "tflite_file" in parameters(config):
        from services.triton.litert_runner import (LiteRTModel, ModelFileMissing, bindings_from_config,
                                                   input_scaling, model_file)
        as_json = json_format.MessageToDict(config, preserving_proto_field_name=True)
        inputs, outputs = bindings_from_config(as_json)
        scale, offset = input_scaling(as_json)
        try:
            runner = LiteRTModel(model_file(as_json, version_dir), inputs, outputs, num_threads=num_threads,
                                 input_scale=scale, input_offset=offset)
        except ModelFileMissing as exc:
            raise ModelUnservable(f"{exc} (BlazePose: run `make models`)") from exc
    else:
        raise ModelUnservable(f"{folder}: platform {config.platform or config.backend!r} is not served on the CPU "
                              "host (onnxruntime_onnx, or the python backend with a tflite_file)")
    return HostedModel(folder, config, runner)


def load_repositories(repositories: list[Path], num_threads: int = 2) -> list[HostedModel]:
    """Every model of every repository, in order; a name seen twice is an error."""
    models: dict[str, HostedModel] = {}
    for repository in repositories:
        if not Path(repository).is_dir():
            raise ModelUnservable(f"model repository {repository} is not a folder")
        for folder in model_repository_dirs(repository):
            model = load_model(folder, num_threads)
            if model.name in models:
                raise ModelUnservable(f"model {model.name} is in both {models[model.name].folder.parent} "
                                      f"and {repository}")
            models[model.name] = model
    return list(models.values())


def default_repositories() -> list[Path]:
    """``services/triton/repository`` and the folders of ``HPE3D_TRITON_REPOSITORIES``."""
    from services.common.settings import Settings

    extra = [Path(p.strip()) for p in Settings.from_env().triton_repositories.split(",") if p.strip()]
    return [REPOSITORY_DIR, *extra]


def _infer_function(runner):
    """A PyTriton infer function over a list of (dynamically batched) requests."""
    def infer(requests):
        return [runner.infer(request.data, request.requested_output_names or None) for request in requests]
    return infer


def _bind(triton, model: HostedModel) -> None:
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    config = model.config

    def tensors(items):
        return [Tensor(name=t.name, dtype=numpy_dtype(t.data_type), shape=tuple(int(d) for d in t.dims))
                for t in items]
    batcher = DynamicBatcher(max_queue_delay_microseconds=config.dynamic_batching.max_queue_delay_microseconds)
    triton.bind(model_name=model.name, infer_func=_infer_function(model.runner), inputs=tensors(config.input),
                outputs=tensors(config.output),
                config=ModelConfig(max_batch_size=config.max_batch_size, batcher=batcher), strict=True)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# What PyTriton guards with its own secret token (it loads the models through the repository API):
# with the server reachable from this machine only, a client may also register system shared memory
# (the pose2d stage's tensors, on the same host) and read the inference statistics (bench/triton_hop.py).
LOCAL_OPEN_ENDPOINTS = ("shared-memory", "statistics")


def security_config(bind_host: str):
    """PyTriton's token-guarded endpoints for a server bound to ``bind_host``: all of its defaults,
    less shared memory and statistics when only this machine reaches the server (a loopback
    address); a server bound to another address keeps them guarded (shared memory only serves a
    client on the same host anyway)."""
    from pytriton.triton import DEFAULT_PROTECTED_ENDPOINTS, TritonSecurityConfig

    guarded = list(DEFAULT_PROTECTED_ENDPOINTS)
    if bind_host in LOOPBACK_HOSTS:
        guarded = [e for e in guarded if e not in LOCAL_OPEN_ENDPOINTS]
    return TritonSecurityConfig(restricted_endpoints=guarded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve Triton model repositories over Triton's protocol "
                                                 "(PyTriton, CPU)")
    parser.add_argument("--repository", action="append", type=Path,
                        help=f"model repository folder (repeatable; default {REPOSITORY_DIR} and the folders "
                             "of HPE3D_TRITON_REPOSITORIES)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default=os.environ.get("HPE3D_BIND_HOST") or Settings.bind_host,
                        help="address the gRPC, HTTP and metrics endpoints bind (default HPE3D_BIND_HOST, "
                             "else 127.0.0.1: this machine only; 0.0.0.0 in a pod)")
    parser.add_argument("--threads", type=int, default=Settings.from_env().triton_model_threads,
                        help="CPU threads per model (default HPE3D_TRITON_MODEL_THREADS, else 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("HPE3D_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    repositories = args.repository or default_repositories()
    try:
        models = load_repositories(repositories, args.threads)
    except (ModelUnservable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not models:
        print(f"error: no model folder (with a config.pbtxt) in {', '.join(map(str, repositories))}",
              file=sys.stderr)
        return 2
    libdir = ensure_libpython_first()

    from pytriton.triton import Triton, TritonConfig

    security = security_config(args.host)
    config = TritonConfig(grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                          grpc_address=args.host, http_address=args.host, metrics_address=args.host,
                          exit_on_error=True,
                          strict_readiness=True, log_verbose=0)
    triton = Triton(config=config, security_config=security)

    def on_sigterm(_signum, _frame):
        raise KeyboardInterrupt  # Triton.serve() stops the server and cleans up on it

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for model in models:
            _bind(triton, model)
        triton.run()
        log.info("serving %s on grpc %s:%d, http %d, metrics %d (ready in %.1fs, LD_LIBRARY_PATH starts with %s)",
                 ", ".join(m.name for m in models), args.host, args.grpc_port, args.http_port, args.metrics_port,
                 time.monotonic() - started, libdir)
        triton.serve()
    except KeyboardInterrupt:
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
