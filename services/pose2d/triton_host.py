"""A Triton Inference Server on the CPU that serves BlazePose with PyTriton.

    python -m services.pose2d.triton_host --grpc-port 8001 --http-port 8000 --metrics-port 8002

It serves ``blazepose_detector`` and ``blazepose_landmarks`` with the same names, tensors and
batching as the model repository in ``models/repository/`` that the official Triton image serves on
GPU nodes, so the pose2d service cannot tell which one it talks to. Both wrap the same LiteRT
runner (``models/litert_runner.py``).

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

from services.pose2d.models import (DETECTOR, LANDMARKS, MAX_BATCH_SIZE, MAX_QUEUE_DELAY_US, ModelSpec,
                                    load_runner, missing_model_files)

log = logging.getLogger("services.pose2d.triton_host")


def ensure_libpython_first() -> str:
    """Prepend this interpreter's LIBDIR to LD_LIBRARY_PATH (for the child processes); returns it."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir and (not current or current[0] != libdir):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + [p for p in current if p != libdir])
    return libdir


def _infer_function(runner):
    """A PyTriton infer function over a list of (dynamically batched) requests."""
    def infer(requests):
        return [runner.infer(request.data, request.requested_output_names or None) for request in requests]
    return infer


def _bind(triton, spec: ModelSpec, runner, max_batch_size: int, queue_delay_us: int) -> None:
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    triton.bind(
        model_name=spec.name,
        infer_func=_infer_function(runner),
        inputs=[Tensor(name=t.name, dtype=np.dtype(t.dtype).type, shape=t.dims) for t in spec.inputs],
        outputs=[Tensor(name=t.name, dtype=np.dtype(t.dtype).type, shape=t.dims) for t in spec.outputs],
        config=ModelConfig(max_batch_size=max_batch_size,
                           batcher=DynamicBatcher(max_queue_delay_microseconds=queue_delay_us)),
        strict=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the BlazePose models over Triton's protocol (PyTriton, CPU)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default="0.0.0.0",
                        help="address to bind, as tritonserver (127.0.0.1: this machine only)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT CPU threads per model")
    parser.add_argument("--max-batch-size", type=int, default=MAX_BATCH_SIZE)
    parser.add_argument("--queue-delay-us", type=int, default=MAX_QUEUE_DELAY_US)
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("HPE3D_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    missing = missing_model_files()
    if missing:
        print(f"error: BlazePose model file {missing[0]} is missing"
              f"{' (and ' + ', '.join(map(str, missing[1:])) + ')' if len(missing) > 1 else ''}; "
              "run `make models` (python -m services.pose2d.models.fetch_blazepose) first", file=sys.stderr)
        return 2
    libdir = ensure_libpython_first()

    from pytriton.triton import Triton, TritonConfig

    started = time.monotonic()
    runners = {spec.name: load_runner(spec, num_threads=args.threads) for spec in (DETECTOR, LANDMARKS)}
    config = TritonConfig(grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                          grpc_address=args.host, http_address=args.host, exit_on_error=True,
                          strict_readiness=True, log_verbose=0)
    triton = Triton(config=config)

    def on_sigterm(_signum, _frame):
        raise KeyboardInterrupt  # Triton.serve() stops the server and cleans up on it

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for spec in (DETECTOR, LANDMARKS):
            _bind(triton, spec, runners[spec.name], args.max_batch_size, args.queue_delay_us)
        triton.run()
        log.info("serving %s on grpc %s:%d, http %d, metrics %d (ready in %.1fs, LD_LIBRARY_PATH starts with %s)",
                 ", ".join(runners), args.host, args.grpc_port, args.http_port, args.metrics_port,
                 time.monotonic() - started, libdir)
        triton.serve()
    except KeyboardInterrupt:
        triton.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
