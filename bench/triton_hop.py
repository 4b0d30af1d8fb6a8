"""Where the time of one Triton call goes: the pose2d stage's calls against the CPU Triton host, split.

    .venv/bin/python bench/triton_hop.py [--servers tritonserver,pytriton] [--threads 2,1] [--requests 20]
                                         [--rounds 3] [--url HOST:PORT]

Starts the Triton host (``services/triton/host.py``) with ``--server S --threads N`` for each N of
``--threads`` and each S of ``--servers`` in turn (``tritonserver``: our model inside the Python
backend's stub; ``pytriton``: PyTriton, the model in the host process behind its proxy), or uses the
server at ``--url``, then times the two requests a followed person costs per frame:
``blazepose_landmarks`` on one 256x256 crop with its heatmap (every frame) and ``person_detector`` on
one 416x416 input (every 0.5 s of video), ``--rounds`` rounds of ``--requests`` calls in each way
(the ways take turns, so load that comes and goes touches them alike; the best round's wall time is
printed, CPU over all rounds):

* in process   the host's own runner for the model (LiteRT / ONNX Runtime) called in this process:
               the model alone;
* grpc         ``TritonTensors`` with the tensors in the gRPC messages (what a remote server gets);
* shm          the same through system shared memory (``services/pose2d/triton_shm.py``).

For each transport it prints, per request: the client's wall time; the part of it spent packing the
request and unpacking the reply in this process (``InferInput.set_data_from_numpy`` / ``as_numpy``,
measured beside the calls; shared memory: writing and copying the regions); Triton's own statistics
(``get_inference_statistics``: the request's time in the server, split into queue, compute_input,
compute_infer, compute_output -- compute_infer is the Python backend's stub running the model, with
PyTriton also handing the tensors on to the host process and back); what is left of the wall time
for gRPC and the loopback socket; the backend's share (compute_infer less the model in process); and
CPU ms per request of this process and of the host's processes (the host, tritonserver, backend
stubs, PyTriton's proxy), and their sum less the model's CPU in process: what the hop itself costs. Then the threads and memory (PSS) of each host process, by name. Other work on the machine disturbs the
wall times; the load average is printed beside them.
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

import numpy as np  # noqa: E402

from bench.pose2d import cpu_seconds  # noqa: E402

CASES = (  # model, input name, one request's input shape, outputs the pose2d stage asks for
    ("blazepose_landmarks", "image", (1, 256, 256, 3), ("landmarks", "pose_flag", "heatmap")),
    ("person_detector", "image", (1, 416, 416, 3), None),      # None: every output
)
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


def start_host(threads: int, server: str) -> tuple[subprocess.Popen, str]:
    from hpe3d_cli.local_stack import _triton_ready, free_port
    from services.triton.host import ensure_libpython_first

    ports = [free_port() for _ in range(3)]
    ensure_libpython_first()
    proc = subprocess.Popen([sys.executable, "-m", "services.triton.host", "--grpc-port", str(ports[0]),
                             "--http-port", str(ports[1]), "--metrics-port", str(ports[2]), "--threads", str(threads),
                             "--server", server],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"127.0.0.1:{ports[0]}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the Triton host exited with {proc.returncode}")
        try:
            if _triton_ready(url):
                return proc, url
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    proc.terminate()
    raise SystemExit("the Triton host was not ready in 180 s")


def stop_host(proc: subprocess.Popen) -> None:
    import signal
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def server_stats(client, model: str) -> dict[str, float]:
    """Triton's cumulative statistics of ``model``: request count and ns per stage."""
    s = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    out = {"count": float(s.get("success", {}).get("count", 0)), "request": float(s.get("success", {}).get("ns", 0))}
    for stage in STAGES:
        out[stage] = float(s.get(stage, {}).get("ns", 0))
    return out


def process_threads(roots: list[int]) -> list[tuple[int, str, int, float]]:
    """(pid, name, threads, PSS in MiB) of ``roots`` and their descendants."""
    parent, info = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = dict(line.split(":\t", 1) for line in open(f"/proc/{entry}/status").read().splitlines()
                          if ":\t" in line)
            cmd = open(f"/proc/{entry}/cmdline").read().replace("\0", " ").strip()
        except OSError:
            continue
        parent[int(entry)] = int(status["PPid"])
        info[int(entry)] = (status["Name"].strip(), int(status["Threads"]), cmd)
    out = []
    for pid, (name, threads, cmd) in sorted(info.items()):
        p = pid
        while p > 1 and p not in roots:
            p = parent.get(p, 0)
        if p in roots:
            label = name if "python" not in name else ("stub " + cmd.split()[-1][:40] if "stub" in cmd
                                                       else "python " + " ".join(cmd.split()[1:3])[:40])
            out.append((pid, label, threads, pss_mib(pid)))
    return out


def pss_mib(pid: int) -> float:
    """Proportional set size of a process (shared pages divided among their users), MiB."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(url: str, threads: int, requests: int, rounds: int, host_pids: list[int]) -> None:
    """Per case, ``rounds`` rounds of (in process, grpc, shm), ``requests`` calls each: the best
    round's wall time per transport (other load comes and goes), CPU and statistics over all rounds."""
    import tritonclient.grpc as tgrpc

    from services.pose2d.triton_shm import TritonTensors
    from services.triton.repositories import load_runner

    client = tgrpc.InferenceServerClient(url)
    rng = np.random.default_rng(0)
    for model, input_name, shape, outputs in CASES:
        config = client.get_model_config(model, as_json=True)["config"]
        names = tuple(outputs or [o["name"] for o in config["output"]])
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        runner = load_runner(model, threads)
        tensors = {t: TritonTensors(client, tgrpc, url, "on" if t == "shm" else "off") for t in ("grpc", "shm")}
        calls = {"model": lambda: runner.infer({input_name: x}, names),
                 "grpc": lambda: tensors["grpc"].grpc_infer(model, {input_name: x}, names, 60),
                 "shm": lambda: tensors["shm"].infer(model, {input_name: x}, names, 60)}
        for call in calls.values():
            for _ in range(3):
                call()
        pack = {"grpc": pack_time(tgrpc, model, input_name, x, names, client, requests),
                "shm": shm_copy_time(tensors["shm"], model, input_name, x, names, requests)}
        wall = {t: float("inf") for t in calls}
        cpu_me = {t: 0.0 for t in calls}
        cpu_host = {t: 0.0 for t in calls}
        stats = {t: {} for t in calls}
        for _ in range(rounds):
            for t, call in calls.items():
                before, me, host = server_stats(client, model), time.process_time(), cpu_seconds(host_pids)
                started = time.perf_counter()
                for _ in range(requests):
                    call()
                wall[t] = min(wall[t], (time.perf_counter() - started) * 1000 / requests)
                cpu_me[t] += (time.process_time() - me) * 1000 / requests / rounds
                cpu_host[t] += (cpu_seconds(host_pids) - host) * 1000 / requests / rounds
                after = server_stats(client, model)
                for k in after:
                    stats[t][k] = stats[t].get(k, 0.0) + after[k] - before[k]
        runner = None   # the next case loads its own
        print(f"\n{model}: input {list(shape)} uint8 ({x.nbytes / 1e3:.0f} kB), outputs "
              f"{', '.join(names)}; model in process {wall['model']:.2f} ms wall, {cpu_me['model']:.2f} ms CPU")
        print(f"  {'':5s} {'wall':>6s} {'pack':>6s} {'server':>6s} {'queue':>6s} {'c_in':>6s} {'c_infer':>7s} "
              f"{'c_out':>6s} {'grpc':>6s} {'backend':>7s} {'cpu me':>6s} {'cpu host':>8s} {'cpu all':>7s}"
              "  (ms per request)")
        for t in ("grpc", "shm"):
            n = max(stats[t]["count"], 1)
            per = {k: v / n / 1e6 for k, v in stats[t].items() if k != "count"}
            print(f"  {t:5s} {wall[t]:6.2f} {pack[t]:6.2f} {per['request']:6.2f} {per['queue']:6.2f} "
                  f"{per['compute_input']:6.2f} {per['compute_infer']:7.2f} {per['compute_output']:6.2f} "
                  f"{wall[t] - per['request'] - pack[t]:6.2f} {per['compute_infer'] - wall['model']:7.2f} "
                  f"{cpu_me[t]:6.2f} {cpu_host[t]:8.2f} {cpu_me[t] + cpu_host[t]:7.2f}")
        print(f"  CPU of the hop (all processes less the model in process): grpc "
              f"{cpu_me['grpc'] + cpu_host['grpc'] - cpu_me['model']:.2f} ms, shm "
              f"{cpu_me['shm'] + cpu_host['shm'] - cpu_me['model']:.2f} ms per request")
        for t in tensors.values():
            t.close()
    client.close()


def pack_time(tgrpc, model, input_name, x, names, client, requests) -> float:
    """ms per request this process spends building the input tensor and reading the outputs."""
    reply = client.infer(model, [_tensor(tgrpc, input_name, x)], outputs=[tgrpc.InferRequestedOutput(n) for n in names])
    started = time.perf_counter()
    for _ in range(requests):
        _tensor(tgrpc, input_name, x)
        reply = tgrpc.InferResult(reply.get_response())   # parsing happens here as in infer()
        for n in names:
            reply.as_numpy(n)
    return (time.perf_counter() - started) * 1000 / requests


def _tensor(tgrpc, name, x):
    t = tgrpc.InferInput(name, list(x.shape), "UINT8")
    t.set_data_from_numpy(x)
    return t


def shm_copy_time(tensors, model, input_name, x, names, requests) -> float:
    """ms per request spent writing the input region and copying the outputs out of the other."""
    import tritonclient.utils.shared_memory as shm

    shared = tensors.shm
    slot = shared._take()   # noqa: SLF001 - the bench looks inside on purpose
    try:
        specs = shared._output_specs(model, 60)   # noqa: SLF001
        sizes = [int(np.prod(specs[n][0])) * np.dtype(specs[n][2]).itemsize for n in names]
        shared._ensure(slot, x.nbytes, sum(sizes))   # noqa: SLF001
        started = time.perf_counter()
        for _ in range(requests):
            shm.set_shared_memory_region(slot.input.handle, [x])
            offset = 0
            for n, size in zip(names, sizes):
                shm.get_contents_as_numpy(slot.output.handle, specs[n][2], [1, *specs[n][0]], offset=offset).copy()
                offset += size
        return (time.perf_counter() - started) * 1000 / requests
    finally:
        shared._give(slot)   # noqa: SLF001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="tritonserver,pytriton",
                        help="host servers to try in turn, comma-separated (services/triton/host.py --server)")
    parser.add_argument("--threads", default="2,1", help="host threads per model to try, comma-separated")
    parser.add_argument("--requests", type=int, default=20, help="calls per round and transport")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", help="use this running server (its thread setting) instead of starting hosts")
    args = parser.parse_args()
    from services.triton.repositories import REPOSITORY_DIR, missing_model_files
    if missing_model_files() or not (REPOSITORY_DIR / "person_detector" / "1" / "model.onnx").is_file():
        print("skipped: model files missing; run `make models` and `make detector`")
        return
    print(f"Triton hop bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    print("columns: wall = client call; pack = building/reading the tensors in this process (in wall); "
          "server = Triton's request time = queue + c_in + c_infer + c_out; grpc = wall - server - pack; "
          "backend = c_infer - model in process; cpu = CPU ms per request of this process / of the host's processes")
    if args.url:
        measure(args.url, 2, args.requests, args.rounds, [])
        return
    for threads, server in itertools.product((int(t) for t in args.threads.split(",")), args.servers.split(",")):
        proc, url = start_host(threads, server)
        try:
            print(f"\n== host --server {server} --threads {threads} (ONNX Runtime intra-op threads, LiteRT threads "
                  f"per model), load average {os.getloadavg()[0]:.2f} ==")
            measure(url, threads, args.requests, args.rounds, [proc.pid])
            print("\nthreads and memory (PSS) per host process, after the requests:")
            listed = process_threads([proc.pid])
            for pid, label, count, pss in listed:
                print(f"  {pid:7d} {count:3d} threads {pss:6.0f} MiB  {label}")
            print(f"  {len(listed)} processes, {sum(row[3] for row in listed):.0f} MiB PSS in all")
        finally:
            stop_host(proc)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
