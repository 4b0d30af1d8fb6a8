"""A Triton Inference Server on the CPU that serves Triton model repositories.

    python -m services.triton.host [--repository DIR ...] --grpc-port 8001 --http-port 8000 --metrics-port 8002

Every model folder of every ``--repository`` (default: ``services/triton/repository``, the BlazePose
models and the person detector, plus the comma-separated folders of ``HPE3D_TRITON_REPOSITORIES``,
e.g. the one ``hpe3d models export`` writes HRNet / SimpleBaseline into) is served under the name,
tensors, max batch size and queue delay of its ``config.pbtxt`` -- the same file the official Triton
image reads on GPU nodes, so the pose2d stage cannot tell which server it talks to. The config's
platform decides what runs the model here:

* ``platform: "onnxruntime_onnx"``: ``1/model.onnx`` (or ``default_model_filename``) in ONNX Runtime
  on the CPU (``onnx_runner.py``); the config's GPU instance group and TensorRT accelerator only
  matter to the official image;
* ``backend: "python"`` with a ``tflite_file`` parameter (BlazePose): the LiteRT runner
  (``litert_runner.py``), the same code the official image's Python backend loads.

Two servers can do it (``--server``, default ``HPE3D_TRITON_SERVER``, else ``tritonserver``):

* ``tritonserver``: the ``tritonserver`` binary of the nvidia-pytriton wheel on a serving repository
  written into a temporary folder (``serving_repository.py``: the source configs with the Python
  backend), whose model (``python_model.py``) runs the runner inside the backend's stub process
  (``tritonserver_process.py``): a request crosses one process boundary;
* ``pytriton``: PyTriton, whose Python backend hands every request on from the stub to this
  process through its proxy (ZeroMQ and shared memory of its own), where the runners are.

Either way the server's Python-backend stub links ``libpython3.11``; on machines where the dynamic
loader would pick another build of that library than this interpreter's (e.g. Debian's beside
pyenv's), model loading fails with ``'_thread.RLock' object has no attribute '_recursion_count'``;
this host therefore puts this interpreter's ``LIBDIR`` first on ``LD_LIBRARY_PATH`` before it starts
the server (the server and the stub inherit it).
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.common.settings import Settings
from services.triton.model_config import numpy_dtype
from services.triton.repositories import REPOSITORY_DIR
from services.triton.serving_repository import ModelPlan, ModelUnservable, plan_model, plan_repositories
from services.triton.tritonserver_process import guarded_apis

log = logging.getLogger("services.triton.host")


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
    """The runner for one model folder, chosen by its config.pbtxt (``plan_model``), loaded in this
    process; raises ``ModelUnservable`` naming the missing file or the unknown platform."""
    return build_model(plan_model(folder), num_threads)


def build_model(plan: ModelPlan, num_threads: int = 2) -> HostedModel:
    """The runner of a checked model folder, in this process (the PyTriton server, tools, tests)."""
    from google.protobuf import json_format

    from services.triton.python_model import make_runner

    as_json = json_format.MessageToDict(plan.config, preserving_proto_field_name=True)
    return HostedModel(plan.folder, plan.config, make_runner(plan.runner, plan.model_file, as_json, num_threads))


def load_repositories(repositories: list[Path], num_threads: int = 2) -> list[HostedModel]:
    """Every model of every repository, in order, loaded in this process; a name seen twice is an error."""
    return [build_model(plan, num_threads) for plan in plan_repositories(repositories)]


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


def security_config(bind_host: str):
    """PyTriton's token-guarded endpoints for a server bound to ``bind_host``: those of
    ``tritonserver_process.guarded_apis`` (shared memory and statistics open to this machine only),
    under PyTriton's own token, which it needs to load the models through the repository API."""
    from pytriton.triton import TritonSecurityConfig

    return TritonSecurityConfig(restricted_endpoints=guarded_apis(bind_host))


SERVERS = ("tritonserver", "pytriton")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve Triton model repositories over Triton's protocol "
                                                 "(CPU)")
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
    parser.add_argument("--server", choices=SERVERS, default=Settings.from_env().triton_server,
                        help="tritonserver: our model inside the Python backend's stub; pytriton: PyTriton, "
                             "the model in this process (default HPE3D_TRITON_SERVER, else tritonserver)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("HPE3D_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    started = time.monotonic()
    repositories = args.repository or default_repositories()
    try:
        plans = plan_repositories(repositories)
    except (ModelUnservable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not plans:
        print(f"error: no model folder (with a config.pbtxt) in {', '.join(map(str, repositories))}",
              file=sys.stderr)
        return 2
    if args.server == "pytriton":
        try:
            models = [build_model(plan, args.threads) for plan in plans]
        except (ModelUnservable, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return serve_pytriton(models, args, started)
    return serve_tritonserver(plans, args, started)


def _die_with_parent() -> None:
    """In the child before exec: killed when the host dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except OSError:
        pass


def _server_ready(url: str) -> bool:
    import tritonclient.grpc as tgrpc

    client = tgrpc.InferenceServerClient(url)
    try:
        return client.is_server_ready()
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        client.close()


def serve_tritonserver(plans: list[ModelPlan], args, started: float) -> int:
    """tritonserver on a serving repository in a temporary folder, until SIGTERM / SIGINT or its exit."""
    from services.triton.serving_repository import write_serving_repository
    from services.triton.tritonserver_process import (LEFTOVER_PREFIX, TritonServerMissing, prepare_backends,
                                                      remove_leftovers, server_command, server_env)

    for path in remove_leftovers(Path(tempfile.gettempdir())):
        log.info("removed %s, left by a host that was killed", path)
    workdir = Path(tempfile.mkdtemp(prefix=f"{LEFTOVER_PREFIX}{os.getpid()}-"))
    proc = None
    stopping = False

    def on_signal(_signum, _frame):
        nonlocal stopping
        stopping = True
        if proc is not None and proc.poll() is None:
            proc.terminate()     # tritonserver finishes the requests in flight, unloads the models, exits

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        try:
            repository = write_serving_repository(plans, workdir / "models", args.threads)
            backends = prepare_backends(workdir)
        except TritonServerMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        command = server_command(repository, backends, args.host, args.grpc_port, args.http_port,
                                 args.metrics_port)
        env = server_env()          # this interpreter's LIBDIR first on LD_LIBRARY_PATH (the module's docstring)
        proc = subprocess.Popen(command, env=env, cwd=workdir, preexec_fn=_die_with_parent)
        if stopping:             # the signal came while the server was being started
            proc.terminate()
        local = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
        url = f"[{local}]:{args.grpc_port}" if ":" in local else f"{local}:{args.grpc_port}"
        ready = False
        while proc.poll() is None and not stopping:
            if not ready and _server_ready(url):
                ready = True
                log.info("serving %s with tritonserver on grpc %s:%d, http %d, metrics %d (ready in %.1fs, "
                         "LD_LIBRARY_PATH starts with %s)", ", ".join(p.name for p in plans), args.host,
                         args.grpc_port, args.http_port, args.metrics_port, time.monotonic() - started,
                         env["LD_LIBRARY_PATH"].split(os.pathsep)[0])
            try:
                proc.wait(timeout=0.5 if not ready else 5)
            except subprocess.TimeoutExpired:
                pass
        code = proc.wait()
        if stopping:
            return 0
        print(f"error: tritonserver exited with code {code}" + ("" if ready else " before its models were ready "
              "(its log above says why)"), file=sys.stderr)
        return 1 if ready else 2
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def serve_pytriton(models: list[HostedModel], args, started: float) -> int:
    """PyTriton with the runners in this process, until SIGTERM / SIGINT."""
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
        log.info("serving %s with PyTriton on grpc %s:%d, http %d, metrics %d (ready in %.1fs, "
                 "LD_LIBRARY_PATH starts with %s)", ", ".join(m.name for m in models), args.host, args.grpc_port,
                 args.http_port, args.metrics_port, time.monotonic() - started, libdir)
        triton.serve()
    except KeyboardInterrupt:
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
