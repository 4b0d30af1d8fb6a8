"""The whole system as processes on loopback: SeaweedFS (S3), the Triton host, the four stages and
the gateway, each on a free port, started in order, each waited for until healthy, all stopped
together on exit (also on Ctrl-C and on failure).

The processes and environment variables are the ones the Kubernetes manifests run.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.common.settings import Settings

log = logging.getLogger(__name__)

STAGES = ("decoder", "pose2d", "lifter3d", "renderer")
STAGE_SERVICES = {"decoder": "hpe3d.v1.Decoder", "pose2d": "hpe3d.v1.Pose2D",
                  "lifter3d": "hpe3d.v1.Lifter3D", "renderer": "hpe3d.v1.Renderer"}


STOP_GRACE_S = 20.0


class StackError(RuntimeError):
    """A component did not start; the message names it and the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise StackError(f"'{name}' not found next to {sys.executable} or on PATH; run `make setup`")
    return found


def _libpython_dir() -> str:
    import sysconfig
    return sysconfig.get_config_var("LIBDIR") or ""


@dataclass
class Component:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class LocalStack:
    """Start with ``with LocalStack() as stack:``; ``stack.gateway_url`` is the REST endpoint."""

    workdir: Path | None = None
    components: tuple[str, ...] = ("s3", "triton", *STAGES, "gateway")
    settings_overrides: dict = field(default_factory=dict)
    startup_timeout_s: float = 120.0
    quiet: bool = True
    settings: Settings = field(init=False)
    gateway_url: str = field(init=False, default="")
    running: list[Component] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._own_workdir = self.workdir is None
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="hpe3d-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("s3", "triton_grpc", "triton_http", "triton_metrics", "gateway", *STAGES)}
        self.ports = ports
        self.settings = dataclasses.replace(
            Settings.from_env(),
            s3_endpoint=f"127.0.0.1:{ports['s3']}", s3_secure=False,
            triton_url=f"127.0.0.1:{ports['triton_grpc']}",
            decoder_addr=f"127.0.0.1:{ports['decoder']}", pose2d_addr=f"127.0.0.1:{ports['pose2d']}",
            lifter3d_addr=f"127.0.0.1:{ports['lifter3d']}", renderer_addr=f"127.0.0.1:{ports['renderer']}",
            **self.settings_overrides)
        self.gateway_url = f"http://127.0.0.1:{ports['gateway']}"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        say = progress or (lambda msg: log.info(msg))
        try:
            if "s3" in self.components:
                say("starting SeaweedFS (S3)")
                self._start_seaweedfs()
            if "triton" in self.components:
                say("starting the Triton host (BlazePose models)")
                self._start_triton()
            for stage in STAGES:
                if stage in self.components:
                    say(f"starting {stage}")
                    self._spawn(stage, [sys.executable, "-m", f"services.{stage}.server"],
                                {"HPE3D_GRPC_PORT": str(self.ports[stage])})
            for stage in STAGES:
                if stage in self.components:
                    self._wait(stage, lambda s=stage: _grpc_healthy(getattr(self.settings, f"{s}_addr"), STAGE_SERVICES[s]))
            if "gateway" in self.components:
                say("starting the gateway")
                self._spawn("gateway", [sys.executable, "-m", "gateway.app", "--host", "127.0.0.1",
                                        "--port", str(self.ports["gateway"])], {})
                self._wait("gateway", lambda: _http_ok(self.gateway_url + "/readyz"))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM to everything, newest first; the gateway and the stages get ``STOP_GRACE_S`` to
        finish in-flight calls, storage (whose own shutdown is slow and holds nothing in flight once
        its clients are gone) a few seconds; whatever is left is killed."""
        for comp in reversed(self.running):
            if comp.process.poll() is None:
                comp.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for comp in reversed(self.running):
            grace = deadline - time.monotonic()
            if comp.name == "s3":
                grace = min(grace, 3.0)
            try:
                comp.process.wait(timeout=max(0.1, grace))
            except subprocess.TimeoutExpired:
                comp.process.kill()
                comp.process.wait()
        self.running.clear()
        if self._own_workdir and os.environ.get("HPE3D_KEEP_STACK_DIR") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- components -------------------------------------------------------------------------
    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.env())
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, str(Path(root) / "proto"), env.get("PYTHONPATH", "")) if p)
        return env

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str]) -> Component:
        log_path = self.workdir / f"{name}.log"
        out = open(log_path, "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self._env(extra_env),
                                cwd=str(self.workdir), start_new_session=True)
        out.close()
        comp = Component(name, proc, log_path)
        self.running.append(comp)
        return comp

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        comp = next(c for c in self.running if c.name == name)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if comp.process.poll() is not None:
                raise StackError(f"{name} exited with code {comp.process.returncode}:\n{comp.log_tail()}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.3)
        raise StackError(f"{name} not healthy after {self.startup_timeout_s:.0f}s:\n{comp.log_tail()}")

    def _start_seaweedfs(self) -> None:
        data = self.workdir / "s3"
        data.mkdir(exist_ok=True)
        ports = {"s3.port": self.ports["s3"]}
        for flag in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                     "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance"):
            ports[flag] = free_port()
        argv = [_bin("weed"), "server", f"-dir={data}", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-volume.max=0", "-master.volumeSizeLimitMB=256"] + [f"-{k}={v}" for k, v in ports.items()]
        self._spawn("s3", argv, {})
        from services.common.storage import ObjectStore
        store = ObjectStore.from_settings(self.settings)
        store.retries = 0

        def ready() -> bool:
            store._bucket_ready = False
            store.ensure_bucket()
            store.put_bytes("_stack/ready", b"ok")
            return store.get_bytes("_stack/ready") == b"ok"
        self._wait("s3", ready)

    def _start_triton(self) -> None:
        lib = _libpython_dir()
        env = {"LD_LIBRARY_PATH": os.pathsep.join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH", "")) if p)}
        self._spawn("triton", [sys.executable, "-m", "services.pose2d.triton_host",
                               "--grpc-port", str(self.ports["triton_grpc"]),
                               "--http-port", str(self.ports["triton_http"]),
                               "--metrics-port", str(self.ports["triton_metrics"])], env)
        self._wait("triton", lambda: _triton_ready(self.settings.triton_url))


def _grpc_healthy(addr: str, service: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(addr) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _http_ok(url: str) -> bool:
    import httpx
    return httpx.get(url, timeout=2).status_code == 200


def _triton_ready(url: str) -> bool:
    import tritonclient.grpc as tgrpc
    from services.pose2d.models import MODEL_NAMES
    client = tgrpc.InferenceServerClient(url)
    try:
        return client.is_server_ready() and all(client.is_model_ready(m) for m in MODEL_NAMES)
    finally:
        client.close()
