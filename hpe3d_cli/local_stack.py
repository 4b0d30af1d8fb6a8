"""The whole system as supervised processes on loopback: SeaweedFS (S3), NATS, the Triton host, the
four stages, the job workers and the API, each replica on fixed loopback ports chosen at start, started
in order, each waited for until healthy, restarted by the ``Supervisor`` whenever it exits (as
Kubernetes restarts a pod), and all stopped together on exit (also on Ctrl-C and on failure).

The processes and environment variables are the ones the Kubernetes manifests run. A stage with
several replicas is reached at a comma-separated address list (``HPE3D_POSE2D_ADDR=h:p1,h:p2``) that
gRPC clients balance round-robin; pose2d replica ``i`` talks to Triton replica ``i mod n``.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hpe3d_cli.nats_server import NatsServerCommand, NatsServerUnavailable, nats_accepts
from hpe3d_cli.supervisor import ProcessSpec, SupervisedProcess, Supervisor, wait_ready
from services.common.settings import Settings
from services.common.stage_names import GATEWAY, NATS, PARTS, POSE2D, S3, STAGE_SERVICES, STAGES, TRITON, WORKER

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent

# Parts (``PARTS``, in start order) that may run as several replicas; S3 and NATS are single servers
# with their own data.
REPLICABLE = (TRITON, *STAGES, WORKER, GATEWAY)
# Seconds between SIGTERM and SIGKILL on a deliberate stop: stages and the API finish in-flight calls;
# storage and NATS hold nothing in flight once their clients are gone.
STOP_GRACE_S = {S3: 3.0, NATS: 3.0}
DEFAULT_STOP_GRACE_S = 20.0


class StackError(RuntimeError):
    """A part did not start; the message names it and the tail of its log."""


def _bin(name: str) -> str:
    """An executable next to this interpreter (the virtual environment's bin/) or on PATH."""
    import shutil
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise StackError(f"'{name}' not found next to {sys.executable} or on PATH; run `make setup`")
    return found


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands to outgoing connections (Linux default 32768-60999)."""
    try:
        lo, hi = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range: a port picked there could be
    taken by any outgoing connection's local end before the part that should listen on it (or its
    restart) binds it."""
    lo, hi = _ephemeral_range()
    candidates = [p for p in range(20000, 65000) if not lo <= p <= hi and p not in _HANDED_OUT]
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)  # never twice from this process, even once the first user is gone
        return port
    raise StackError("no free loopback port found")


def parse_replicas(text: str) -> dict[str, int]:
    """``"worker=2,gateway=2"`` -> ``{"worker": 2, "gateway": 2}``; ValueError names a bad item."""
    out: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        part, sep, count = item.partition("=")
        part = part.strip()
        if not sep or part not in REPLICABLE:
            raise ValueError(f"bad replica item {item!r}: expected PART=N with PART one of {', '.join(REPLICABLE)}")
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"bad replica count in {item!r}: not an integer") from None
        if not 1 <= n <= 16:
            raise ValueError(f"bad replica count in {item!r}: must be 1..16")
        out[part] = n
    return out


@dataclass
class LocalStack:
    """Start with ``with LocalStack() as stack:``; ``stack.gateway_url`` is the REST endpoint (the
    first API replica; ``stack.gateway_urls`` lists them all)."""

    workdir: Path | None = None
    components: tuple[str, ...] | None = None      # parts to run; None = all of them
    settings_overrides: dict = field(default_factory=dict)
    startup_timeout_s: float = 120.0
    quiet: bool = True
    replicas: dict[str, int] = field(default_factory=dict)
    gateway_port: int = 0                           # port of the first API replica; 0 = a free one
    settings: Settings = field(init=False)
    gateway_url: str = field(init=False, default="")
    gateway_urls: list[str] = field(init=False, default_factory=list)
    operations_urls: list[str] = field(init=False, default_factory=list)   # each API replica's operations port
    api_key: str = field(init=False, default="", repr=False)  # an admin key of this run ("" with HPE3D_AUTH=off)
    supervisor: Supervisor = field(init=False)

    def __post_init__(self) -> None:
        self.components = tuple(self.components) if self.components is not None else PARTS
        unknown = [p for p in (*self.components, *self.replicas) if p not in PARTS]
        if unknown:
            raise ValueError(f"unknown part(s) {unknown}; parts are {', '.join(PARTS)}")
        bad = [p for p, n in self.replicas.items() if n != 1 and p not in REPLICABLE]
        if bad:
            raise ValueError(f"{bad} cannot run as several replicas")
        if self.count(TRITON) > self.count(POSE2D):
            raise ValueError(f"{self.count(TRITON)} triton replicas need as many pose2d replicas at least: pose2d "
                             "replica i calls triton replica i mod N, so the others would stay idle")
        self._own_workdir = self.workdir is None
        self._key_id = ""
        self.workdir = Path(self.workdir or tempfile.mkdtemp(prefix="hpe3d-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.supervisor = Supervisor()
        self._ready_checks: dict[str, Callable[[], bool]] = {}
        n = self.count
        # Fixed loopback ports, one set per replica, kept across restarts.
        self.ports: dict[str, list[int]] = {
            S3: [free_port()], NATS: [free_port()],
            "triton_grpc": [free_port() for _ in range(n(TRITON))],
            "triton_http": [free_port() for _ in range(n(TRITON))],
            "triton_metrics": [free_port() for _ in range(n(TRITON))],
            GATEWAY: [self.gateway_port or free_port()] + [free_port() for _ in range(n(GATEWAY) - 1)],
            "gateway_operations": [free_port() for _ in range(n(GATEWAY))],
            **{stage: [free_port() for _ in range(n(stage))] for stage in STAGES},
        }
        addrs = {stage: ",".join(f"127.0.0.1:{p}" for p in self.ports[stage]) for stage in STAGES}
        overrides = dict(s3_endpoint=f"127.0.0.1:{self.ports[S3][0]}", s3_secure=False, nats_url=self.nats_url,
                         triton_url=f"127.0.0.1:{self.ports['triton_grpc'][0]}",
                         **{f"{stage}_addr": addrs[stage] for stage in STAGES})
        self.settings = dataclasses.replace(Settings.from_env(), **{**overrides, **self.settings_overrides})
        if not self.settings.stage_token:
            # Every part binds 127.0.0.1; a token of this run (HPE3D_STAGE_TOKEN when set) also keeps
            # other users of the machine from calling the stages. The API and workers get it by env.
            self.settings = dataclasses.replace(self.settings, stage_token=secrets.token_hex(16))
        self.gateway_urls = [f"http://127.0.0.1:{p}" for p in self.ports[GATEWAY]]
        self.gateway_url = self.gateway_urls[0]
        self.operations_urls = [f"http://127.0.0.1:{p}" for p in self.ports["gateway_operations"]]

    def count(self, part: str) -> int:
        """How many replicas of ``part`` run."""
        return self.replicas.get(part, 1)

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports[NATS][0]}"

    @property
    def running(self) -> list[SupervisedProcess]:
        return list(self.supervisor.processes)

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start every part in order, wait for each to be healthy, then supervise them all."""
        say = progress or (lambda msg: log.info(msg))
        try:
            if S3 in self.components:
                say("starting SeaweedFS (S3)")
                self._start_seaweedfs()
            if NATS in self.components:
                say("starting NATS (JetStream)")
                self._start_nats()
            if TRITON in self.components:
                say("starting the Triton host (BlazePose models)" + self._times(TRITON))
                self._start_triton()
            started = []
            for stage in STAGES:
                if stage in self.components:
                    say(f"starting {stage}" + self._times(stage))
                    for i, port in enumerate(self.ports[stage]):
                        env = {"HPE3D_GRPC_PORT": str(port)}
                        if stage == POSE2D:
                            env["HPE3D_TRITON_URL"] = f"127.0.0.1:{self.ports['triton_grpc'][i % self.count(TRITON)]}"
                        started.append((stage, port, self._spawn(stage, i, ["-m", f"services.{stage}.server"], env)))
            for stage, port, proc in started:
                self._wait(proc, lambda s=stage, p=port: _grpc_healthy(f"127.0.0.1:{p}", STAGE_SERVICES[s]))
            if WORKER in self.components:
                say("starting the job worker" + self._times(WORKER))
                for i in range(self.count(WORKER)):
                    # The worker id (in manifests as the job's owner) is the replica's name.
                    self._spawn(WORKER, i, ["-m", "gateway.worker", "--worker-id", self._name(WORKER, i)], {})
            if GATEWAY in self.components:
                say("starting the gateway" + self._times(GATEWAY))
                self._make_api_key()
                # each API replica's operations port (metrics, readiness detail), as in the pods
                procs = [self._spawn(GATEWAY, i, ["-m", "gateway.api", "--host", "127.0.0.1", "--port", str(port)],
                                     {"HPE3D_METRICS_PORT": str(self.ports["gateway_operations"][i])})
                         for i, port in enumerate(self.ports[GATEWAY])]
                for proc, url in zip(procs, self.gateway_urls):
                    self._wait(proc, lambda u=url: _http_ok(u + "/readyz"))
            for proc in self.running:
                if proc.part == WORKER:
                    self._wait(proc, proc.alive)
        except BaseException:
            self.stop()
            raise
        self.supervisor.watch()

    def stop(self) -> None:
        """Revoke this run's API key; SIGTERM to everything, newest first; each part gets its grace
        (``STOP_GRACE_S``) to finish in-flight work; whatever is left is killed."""
        self._revoke_api_key()
        self.supervisor.stop_all()
        if self._own_workdir and os.environ.get("HPE3D_KEEP_STACK_DIR") != "1":
            import shutil
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- faults, for operators and fault tests ------------------------------------------------
    def process(self, name: str) -> SupervisedProcess:
        """The supervised process ``name``: a part (``"pose2d"``) or a replica (``"pose2d-1"``)."""
        return self.supervisor.find(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` (default SIGKILL) to the process ``name``; its pid. The supervisor restarts it."""
        proc = self.process(name)
        pid = proc.pid
        os.kill(pid, sig)
        return pid

    def healthy(self, name: str) -> bool:
        """Whether process ``name`` runs and passes the readiness check it passed at start."""
        proc = self.process(name)
        check = self._ready_checks.get(name, proc.alive)
        try:
            return proc.alive() and bool(check())
        except Exception:  # noqa: BLE001 - not ready
            return False

    def wait_healthy(self, name: str, timeout_s: float = 120.0) -> None:
        """Block until ``healthy(name)`` (say, after a restart); StackError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy(name):
            if time.monotonic() > deadline:
                raise StackError(f"{name} not healthy {timeout_s:.0f}s after its restart:\n{self.process(name).log_tail()}")
            time.sleep(0.3)

    def hold(self, name: str) -> None:
        """Stop ``name`` and keep it down (an outage) until ``release``."""
        self.supervisor.hold(name)

    def release(self, name: str) -> None:
        self.supervisor.release(name)

    # -- parts ------------------------------------------------------------------------------
    def _times(self, part: str) -> str:
        n = self.count(part)
        return f" ({n} replicas)" if n > 1 else ""

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.env())
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")) if p)
        return env

    def _name(self, part: str, replica: int) -> str:
        """A replica's process name: the part's name, suffixed ``-N`` when the part has replicas."""
        return f"{part}-{replica}" if self.count(part) > 1 else part

    def _spawn(self, part: str, replica: int, argv: list[str], extra_env: dict[str, str]) -> SupervisedProcess:
        """Start one replica of ``part``; ``argv`` starting with ``-m`` runs this interpreter."""
        name = self._name(part, replica)
        if argv and argv[0] == "-m":
            argv = [sys.executable, *argv]
        spec = ProcessSpec(part=part, replica=replica, argv=tuple(argv), env=self._env(extra_env), cwd=self.workdir,
                           log_path=self.workdir / f"{name}.log", name=name,
                           stop_grace_s=STOP_GRACE_S.get(part, DEFAULT_STOP_GRACE_S))
        return self.supervisor.add(spec)

    def _wait(self, proc: SupervisedProcess, ready: Callable[[], bool]) -> None:
        self._ready_checks[proc.name] = ready
        wait_ready(proc, ready, self.startup_timeout_s, StackError)

    def _make_api_key(self) -> None:
        """An admin key for this run (as Jupyter makes a token): ``hpe3d serve`` prints it, ``hpe3d run``
        and the tests use it. It is revoked when the stack stops. None with HPE3D_AUTH=off."""
        if not self.settings.auth or self._key_id:
            return
        from gateway.api.api_keys import ApiKeyStore
        from services.common.storage import ObjectStore
        record, self.api_key = ApiKeyStore(ObjectStore.from_settings(self.settings)).create("local", admin=True)
        self._key_id = record.id

    def _revoke_api_key(self) -> None:
        if not self._key_id:
            return
        from gateway.api.api_keys import ApiKeyStore
        from services.common.storage import ObjectStore
        store = ObjectStore.from_settings(self.settings)
        store.retries = 0
        try:
            ApiKeyStore(store).revoke(self._key_id)
        except Exception as exc:  # noqa: BLE001 - storage already gone: the key goes with it
            log.debug("could not revoke the stack's key: %s", exc)
        self._key_id = ""

    def _start_seaweedfs(self) -> None:
        data = self.workdir / "s3"
        data.mkdir(exist_ok=True)
        ports = {"s3.port": self.ports[S3][0]}
        for flag in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                     "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance"):
            ports[flag] = free_port()
        argv = [_bin("weed"), "server", f"-dir={data}", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-volume.max=0", "-master.volumeSizeLimitMB=256"] + [f"-{k}={v}" for k, v in ports.items()]
        proc = self._spawn(S3, 0, argv, {})
        from services.common.storage import ObjectStore
        store = ObjectStore.from_settings(self.settings)
        store.retries = 0

        def ready() -> bool:
            store._bucket_ready = False
            store.ensure_bucket()
            store.put_bytes("_stack/ready", b"ok")
            return store.get_bytes("_stack/ready") == b"ok"
        self._wait(proc, ready)

    def _start_nats(self) -> None:
        command = NatsServerCommand(port=self.ports[NATS][0], store_dir=self.workdir / "nats")
        command.store_dir.mkdir(exist_ok=True)
        try:
            argv = command.argv()
        except NatsServerUnavailable as exc:
            raise StackError(str(exc)) from None
        proc = self._spawn(NATS, 0, argv, {})
        self._wait(proc, lambda: nats_accepts(command.url()))

    def _start_triton(self) -> None:
        import sysconfig
        lib = sysconfig.get_config_var("LIBDIR") or ""
        env = {"LD_LIBRARY_PATH": os.pathsep.join(p for p in (lib, os.environ.get("LD_LIBRARY_PATH", "")) if p)}
        procs = []
        for i in range(self.count(TRITON)):
            procs.append(self._spawn(TRITON, i, ["-m", "services.triton.host",
                                                   "--grpc-port", str(self.ports["triton_grpc"][i]),
                                                   "--http-port", str(self.ports["triton_http"][i]),
                                                   "--metrics-port", str(self.ports["triton_metrics"][i])], env))
        for i, proc in enumerate(procs):
            self._wait(proc, lambda i=i: _triton_ready(f"127.0.0.1:{self.ports['triton_grpc'][i]}"))


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
    from services.common.pose_models import DEFAULT_POSE_MODEL, POSE_MODELS
    client = tgrpc.InferenceServerClient(url)
    try:
        return client.is_server_ready() and all(client.is_model_ready(m)
                                                for m in POSE_MODELS[DEFAULT_POSE_MODEL].triton_models)
    finally:
        client.close()
