"""The ``tritonserver`` binary of the nvidia-pytriton wheel, started on a serving repository.

The wheel ships Triton Inference Server (``pytriton/tritonserver/bin/tritonserver``, its libraries in
``nvidia_pytriton.libs``) with one backend, Python, whose stub process is built per Python version
(``pytriton/tritonserver/python_backend_stubs/<major.minor>/``). ``prepare_backends`` puts the backend
and the stub of this interpreter's version into a folder of our own; ``server_command`` and
``server_env`` give the command line and the environment:

* ``LD_LIBRARY_PATH``: this interpreter's ``LIBDIR`` first (the stub links ``libpython3.11``; another
  build of it on the machine breaks model loading), then the wheel's libraries;
* ``PATH``: this interpreter's folder first, so the embedded Python of the stub finds this virtual
  environment (numpy, ONNX Runtime, LiteRT);
* ``--model-control-mode=none``: every model of the repository is loaded at start and nothing can
  load or unload one later;
* ``--backend-config=python,...``: each stub's shared-memory pool starts at 4 MiB and grows by 1 MiB
  (the backend's default of 64 MiB per stub would fill a container's 64 MiB ``/dev/shm``), under a
  prefix of its own so that several hosts on one machine do not share regions;
* ``--grpc-restricted-protocol`` / ``--http-restricted-api``: the APIs in ``guarded_apis`` answer only
  a request carrying a random token that this process makes and uses nowhere, i.e. nobody on another
  machine (the token is on the server's command line, which processes of the same machine or pod can read).

A host killed with SIGKILL cannot clean up: its serving folder (``hpe3d-triton-<pid>-*`` in the temporary
directory) and its stubs' shared-memory pools (``/dev/shm/hpe3d-triton-<pid>-*``) stay behind.
``remove_leftovers`` deletes those of hosts that no longer run, when the next host starts.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
import sysconfig
from pathlib import Path

from services.common.pids import is_running

# Triton's API groups that no client of this host needs: loading models, tracing, log settings.
ALWAYS_GUARDED = ("model-repository", "trace", "logging")
# Open to a client on this machine only (a server bound to a loopback address): system shared memory
# (the pose2d stage's tensors through /dev/shm) and the inference statistics (bench/triton_hop.py).
LOCAL_ONLY = ("shared-memory", "statistics")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "triton-access-token"
BACKEND_SHM_START_BYTES = 4 * 1024 * 1024
BACKEND_SHM_GROWTH_BYTES = 1024 * 1024
LEFTOVER_PREFIX = "hpe3d-triton-"      # + the host's pid + "-": its serving folder, its stubs' shm pools


class TritonServerMissing(FileNotFoundError):
    """The nvidia-pytriton wheel (or its stub for this Python) is not installed."""


def distribution() -> Path:
    """The wheel's ``tritonserver`` folder (bin/, backends/, python_backend_stubs/, caches/)."""
    try:
        import pytriton
    except ImportError as exc:
        raise TritonServerMissing("the tritonserver binary comes with the nvidia-pytriton wheel: "
                                  "pip install -r services/triton/requirements.txt") from exc
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def libraries_dir() -> Path:
    """The wheel's shared libraries (``nvidia_pytriton.libs`` beside the package)."""
    return distribution().parents[1] / "nvidia_pytriton.libs"


def guarded_apis(bind_host: str) -> list[str]:
    """The API groups guarded by the unknown token for a server bound to ``bind_host``: shared memory and
    statistics stay open only when no other machine can reach the server."""
    local = bind_host in LOOPBACK_HOSTS
    return [*ALWAYS_GUARDED, *(() if local else LOCAL_ONLY)]


def prepare_backends(workdir: Path) -> Path:
    """``workdir/backends/python`` with the wheel's Python backend and the stub of this interpreter."""
    dist = distribution()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonServerMissing(f"{stub} is missing: the nvidia-pytriton wheel has no Python backend stub "
                                  f"for Python {version}")
    backends = Path(workdir) / "backends"
    shutil.copytree(dist / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def server_command(repository: Path, backends: Path, host: str, grpc_port: int, http_port: int,
                   metrics_port: int, token: str | None = None, shm_prefix: str | None = None) -> list[str]:
    """The tritonserver command line serving ``repository`` (see the module's docstring)."""
    dist = distribution()
    token = token or secrets.token_urlsafe(32)
    shm_prefix = shm_prefix or f"{LEFTOVER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    guard = f"{','.join(guarded_apis(host))}:{TOKEN_HEADER}={token}"
    return [str(dist / "bin" / "tritonserver"),
            f"--model-repository={repository}", f"--backend-directory={backends}",
            f"--cache-directory={dist / 'caches'}", "--model-control-mode=none",
            f"--grpc-address={host}", f"--grpc-port={grpc_port}",
            f"--http-address={host}", f"--http-port={http_port}",
            f"--metrics-address={host}", f"--metrics-port={metrics_port}",
            f"--grpc-restricted-protocol={guard}", f"--http-restricted-api={guard}",
            f"--backend-config=python,shm-default-byte-size={BACKEND_SHM_START_BYTES}",
            f"--backend-config=python,shm-growth-byte-size={BACKEND_SHM_GROWTH_BYTES}",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            "--pinned-memory-pool-byte-size=0", "--allow-gpu-metrics=false",   # no GPU here
            "--exit-on-error=true", "--strict-readiness=true", "--exit-timeout-secs=10", "--log-verbose=0"]


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of tritonserver and its stubs (see the module's docstring)."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    current = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in (libdir, str(libraries_dir())) if p]
                                             + [p for p in current if p != str(libraries_dir())])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def remove_leftovers(tmp_dir: Path, shm_dir: Path = Path("/dev/shm")) -> list[Path]:
    """Delete the serving folders in ``tmp_dir`` and the shared-memory files in ``shm_dir`` of hosts that
    no longer run (named ``hpe3d-triton-<pid>-...``); returns what was deleted."""
    pattern = re.compile(rf"^{re.escape(LEFTOVER_PREFIX)}(\d+)-")
    removed = []
    for folder in (Path(tmp_dir), Path(shm_dir)):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            match = pattern.match(entry.name)
            if not match or is_running(int(match.group(1))):
                continue
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
            except OSError:
                pass            # another user's, or gone meanwhile
    return removed
