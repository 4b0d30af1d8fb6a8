"""Keeps processes alive the way Kubernetes keeps pods alive.

Each supervised process is started from a fixed ``ProcessSpec`` (argv, environment, ports inside
argv/env, log file), in a process group of its own. A watcher thread checks every ``poll_s`` seconds;
when a process has exited (crash, ``kill -9``, OOM) and was not stopped on purpose, the rest of its
process group is killed (a Triton host leaves its ``tritonserver`` child behind otherwise), a log line
says what happened, and the same spec is started again after a back-off: ``backoff_initial_s`` doubled
on each consecutive crash up to ``backoff_max_s``, back to the initial value once a run lasted
``stable_after_s`` seconds. Times are in seconds of ``time.monotonic``.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessSpec:
    """What to run for one replica of one part; the same spec is reused on every restart."""

    part: str                      # the part's name in the one vocabulary: "s3", "pose2d", "worker", ...
    replica: int                   # 0-based replica index
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    log_path: Path                 # stdout and stderr of every run, appended
    name: str = ""                 # display name; "" = part, or "part-N" when the part has replicas
    stop_grace_s: float = 20.0     # SIGTERM to SIGKILL on a deliberate stop

    @property
    def label(self) -> str:
        return self.name or self.part


@dataclass
class SupervisedProcess:
    """One replica under supervision: the current ``subprocess.Popen`` and its restart history."""

    spec: ProcessSpec
    process: subprocess.Popen | None = None
    restarts: int = 0              # how many times the supervisor started it again after an exit
    crashes_in_a_row: int = 0
    started_at: float = 0.0
    restart_at: float | None = None  # set while waiting out the back-off
    held: bool = False             # stopped on purpose (``hold``): not restarted until ``release``
    exit_codes: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.label

    @property
    def part(self) -> str:
        return self.spec.part

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.spec.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Supervisor:
    """Start processes, restart the ones that die, stop them all. Thread-safe."""

    def __init__(self, backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0,
                 stable_after_s: float = 30.0, poll_s: float = 0.2):
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.poll_s = poll_s
        self.processes: list[SupervisedProcess] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- starting ----------------------------------------------------------------------------
    def add(self, spec: ProcessSpec) -> SupervisedProcess:
        """Start ``spec`` now and keep it under supervision (restarts begin once ``watch`` ran)."""
        proc = SupervisedProcess(spec)
        with self._lock:
            self._launch(proc)
            self.processes.append(proc)
        return proc

    def _launch(self, proc: SupervisedProcess) -> None:
        spec = proc.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as out:
            proc.process = subprocess.Popen(list(spec.argv), stdout=out, stderr=subprocess.STDOUT, env=spec.env,
                                            cwd=str(spec.cwd), start_new_session=True)
        proc.started_at = time.monotonic()
        proc.restart_at = None

    def watch(self) -> None:
        """Begin restarting processes that exit (idempotent)."""
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch_loop, name="supervisor", daemon=True)
            self._watcher.start()

    # -- the watcher -------------------------------------------------------------------------
    def backoff_s(self, crashes_in_a_row: int) -> float:
        """Delay before the next start after ``crashes_in_a_row`` consecutive short-lived runs."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, crashes_in_a_row - 1))

    def _watch_loop(self) -> None:
        while not self._stopping.wait(self.poll_s):
            with self._lock:
                for proc in self.processes:
                    if not self._stopping.is_set():
                        self._check(proc)

    def _check(self, proc: SupervisedProcess) -> None:
        if proc.held or proc.process is None:
            return
        now = time.monotonic()
        if proc.restart_at is None:
            code = proc.process.poll()
            if code is None:
                return
            _kill_group(proc.process.pid)
            ran_s = now - proc.started_at
            proc.exit_codes.append(code)
            proc.crashes_in_a_row = 1 if ran_s >= self.stable_after_s else proc.crashes_in_a_row + 1
            delay = self.backoff_s(proc.crashes_in_a_row)
            proc.restart_at = now + delay
            log.warning("%s (pid %d) exited with code %s after %.1fs; restarting in %.1fs",
                        proc.name, proc.process.pid, code, ran_s, delay)
        elif now >= proc.restart_at:
            self._launch(proc)
            proc.restarts += 1
            log.warning("%s restarted (pid %d, restart %d)", proc.name, proc.process.pid, proc.restarts)

    # -- deliberate stops --------------------------------------------------------------------
    def find(self, name: str) -> SupervisedProcess:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(f"no supervised process named {name!r}; have {[p.name for p in self.processes]}")

    def hold(self, name: str) -> None:
        """Stop one process (SIGTERM, then SIGKILL) and keep it down until ``release``: an outage."""
        proc = self.find(name)
        with self._lock:
            proc.held = True
        self._terminate(proc)

    def release(self, name: str) -> None:
        """Start a held process again with its spec."""
        proc = self.find(name)
        with self._lock:
            proc.held = False
            self._launch(proc)
            proc.restarts += 1
        log.warning("%s started again after a deliberate stop (pid %d)", proc.name, proc.process.pid)

    def stop_all(self, order: list[SupervisedProcess] | None = None) -> None:
        """SIGTERM every process (``order``, else newest first), wait up to each one's grace, then kill."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            procs = order if order is not None else list(reversed(self.processes))
            for proc in procs:
                if proc.alive():
                    proc.process.send_signal(signal.SIGTERM)
            for proc in procs:
                self._terminate(proc)
            self.processes.clear()

    @staticmethod
    def _terminate(proc: SupervisedProcess) -> None:
        if proc.process is None:
            return
        if proc.alive():
            proc.process.send_signal(signal.SIGTERM)
            try:
                proc.process.wait(timeout=proc.spec.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
        _kill_group(proc.process.pid)


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group (children of a dead leader)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def wait_ready(proc: SupervisedProcess, ready: Callable[[], bool], timeout_s: float,
               error: Callable[[str], Exception]) -> None:
    """At start-up, before ``Supervisor.watch``: poll ``ready()`` until it is true; ``error(message)``
    is raised when the process exits first (a part that cannot start is not restarted in a loop) or
    ``timeout_s`` passes, with the tail of its log in the message."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process is not None and proc.process.poll() is not None:
            raise error(f"{proc.name} exited with code {proc.process.returncode}:\n{proc.log_tail()}")
        try:
            if ready():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise error(f"{proc.name} not healthy after {timeout_s:.0f}s:\n{proc.log_tail()}")
