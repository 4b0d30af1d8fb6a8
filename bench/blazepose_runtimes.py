"""Milliseconds per call of the two BlazePose models in the two runtimes the Triton repositories use:
LiteRT (``services/triton/repository``, the CPU repository) and ONNX Runtime on the CPU
(``services/triton/repository_gpu``'s .onnx files, from ``make models``).

    .venv/bin/python bench/blazepose_runtimes.py [--threads 2] [--repeat 5] [--calls 5]

Each model gets one image of its input size per call (random pixels: the work of these networks does not
depend on the values), with the runners the Triton host builds (``repositories.load_runner``), in this
process, no server. Prints, per model and runtime, the fastest and the slowest of ``--repeat`` rounds, each
round's figure the mean of ``--calls`` calls, and the load average, since other work on the machine slows
these figures down.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "proto")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench.local_models import config_json  # noqa: E402
from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS  # noqa: E402
from services.triton.repositories import GPU_REPOSITORY_DIR, REPOSITORY_DIR, load_runner  # noqa: E402

RUNTIMES = {"LiteRT": REPOSITORY_DIR, "ONNX Runtime": GPU_REPOSITORY_DIR}


def per_call_ms(runner, name: str, image: np.ndarray, repeat: int, calls: int) -> list[float]:
    inputs = {name: image}
    runner.infer(inputs)  # warm-up
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            runner.infer(inputs)
        rounds.append((time.perf_counter() - started) * 1000 / calls)
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"BlazePose per call, 1 image, {args.threads} threads, fastest-slowest of {args.repeat} rounds of "
          f"{args.calls} calls:")
    for model in (BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS):
        for runtime, repository in RUNTIMES.items():
            image_input = config_json(repository / model)["input"][0]
            shape = [1] + [int(d) for d in image_input["dims"]]
            try:
                runner = load_runner(model, args.threads, repository)
            except FileNotFoundError as exc:
                print(f"  {model:20s} {runtime:12s} skipped: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - host.ModelUnservable names the missing file
                print(f"  {model:20s} {runtime:12s} skipped: {exc}")
                continue
            ms = per_call_ms(runner, image_input["name"], rng.integers(0, 256, shape, dtype=np.uint8),
                             args.repeat, args.calls)
            print(f"  {model:20s} {runtime:12s} {min(ms):5.1f}-{max(ms):5.1f} ms")
    print(f"load average {os.getloadavg()[0]:.2f} (2-core machine; other work slows these figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
