"""Memory and completion of many jobs at once on the whole local stack.

    .venv/bin/python bench/load.py [VIDEO] [--jobs 20] [--replicas worker=2,gateway=2] [--interval 0.5]

Starts the local stack (SeaweedFS, NATS, the Triton host, the four stages, workers and API replicas as
``--replicas`` says; the default is the fault tests' two workers and two API replicas), submits ``--jobs``
copies of the clip at once (default: the tests' two_people_office_24f.mp4, 24 frames, two people) and
samples, every ``--interval`` seconds until every job has ended, the memory of every process the stack
runs (they are this process's descendants: the parts, tritonserver and its model stubs):

* RSS summed over the processes (pages shared between processes, e.g. by forked stubs, count once per
  process: an upper bound);
* PSS summed (``/proc/PID/smaps_rollup``: each shared page divided among its users: what the machine holds).

Prints the peak of both with the time it was reached, the peak per part, the jobs' final states and the
wall time from the first upload to the last job's end.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "proto")]

from bench.processes import children_by_parent, descendants  # noqa: E402
from hpe3d_cli.local_stack import LocalStack, parse_replicas  # noqa: E402

DEFAULT_CLIP = ROOT / "tests" / "data" / "two_people_office_24f.mp4"
FINISHED = ("succeeded", "failed", "cancelled")


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return 0, 0
    return rss, pss


class MemorySampler(threading.Thread):
    """Samples the memory of ``parts`` (name -> pid) and all their descendants until stopped."""

    def __init__(self, parts: dict[str, int], interval_s: float):
        super().__init__(daemon=True)
        self.parts = parts
        self.interval_s = interval_s
        self.stop_event = threading.Event()
        self.t0 = time.perf_counter()
        self.peak_rss = self.peak_pss = 0
        self.peak_at_s = 0.0
        self.part_peak_pss: dict[str, int] = {}
        self.samples = 0

    def sample(self) -> None:
        children = children_by_parent()
        total_rss = total_pss = 0
        for name, root in self.parts.items():
            pids = [root, *descendants(root, children)]
            part_pss = 0
            for pid in pids:
                rss, pss = _memory_kib(pid)
                total_rss += rss
                total_pss += pss
                part_pss += pss
            self.part_peak_pss[name] = max(self.part_peak_pss.get(name, 0), part_pss)
        self.samples += 1
        if total_pss > self.peak_pss:
            self.peak_pss, self.peak_at_s = total_pss, time.perf_counter() - self.t0
        self.peak_rss = max(self.peak_rss, total_rss)

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval_s)


def _gib(kib: int) -> str:
    return f"{kib / 2 ** 20:.2f} GiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--replicas", default="worker=2,gateway=2", help="as hpe3d run --replicas")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up after this many seconds")
    args = parser.parse_args()
    if not args.video.exists():
        raise SystemExit(f"{args.video} not found")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}; "
          f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with LocalStack(replicas=parse_replicas(args.replicas), startup_timeout_s=240) as stack:
        parts = {p.name: p.pid for p in stack.running if p.pid}
        sampler = MemorySampler(parts, args.interval)
        sampler.sample()
        idle_pss, idle_rss = sampler.peak_pss, sampler.peak_rss
        sampler.start()
        ids: list[str] = []
        urls = stack.gateway_urls
        headers = {"Authorization": f"Bearer {stack.api_key}"}
        data = args.video.read_bytes()
        t0 = time.perf_counter()

        def submit(i: int) -> None:
            resp = httpx.post(f"{urls[i % len(urls)]}/v1/jobs", headers=headers, timeout=300,
                              files={"file": (args.video.name, data, "video/mp4")})
            resp.raise_for_status()
            ids.append(resp.json()["id"])
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(args.jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        states: dict[str, str] = {}
        with httpx.Client(base_url=urls[0], headers=headers, timeout=30) as http:
            while len(states) < len(ids) and time.perf_counter() - t0 < args.timeout:
                for job_id in ids:
                    if job_id not in states:
                        state = http.get(f"/v1/jobs/{job_id}").json()["state"]
                        if state in FINISHED:
                            states[job_id] = state
                time.sleep(1.0)
        wall = time.perf_counter() - t0
        sampler.stop_event.set()
        sampler.join()
    counts = {s: list(states.values()).count(s) for s in FINISHED}
    print(f"clip: {args.video.name}; {args.jobs} jobs at once; replicas {args.replicas}; "
          f"{sampler.samples} samples every {args.interval} s")
    print(f"jobs: {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['cancelled']} cancelled, "
          f"{len(ids) - len(states)} unfinished after {wall:.0f} s (first upload to last end)")
    print(f"stack idle: PSS {_gib(idle_pss)}, RSS summed {_gib(idle_rss)}")
    print(f"peak: PSS {_gib(sampler.peak_pss)} at {sampler.peak_at_s:.0f} s, RSS summed {_gib(sampler.peak_rss)}")
    for name, kib in sorted(sampler.part_peak_pss.items(), key=lambda kv: -kv[1]):
        print(f"  {name:>14}: peak PSS {kib / 1024:7.0f} MiB")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if len(states) < len(ids) or counts["succeeded"] != len(ids):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
