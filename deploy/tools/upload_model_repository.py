"""Copy the Triton model repository into MinIO, where the GPU Triton loads it (``s3://…/models``).

Run inside the ``hpe3d/pose2d-triton`` image (the Triton GPU Deployment's initContainer does), or
from a checkout after ``make models``::

    python deploy/tools/upload_model_repository.py [--src services/triton/repository [--src DIR ...]]
        [--prefix models] [--file LOCAL=KEY ...] [--prune]

It reads the usual settings (``HPE3D_S3_ENDPOINT``, ``HPE3D_S3_ACCESS_KEY``,
``HPE3D_S3_SECRET_KEY``, ``HPE3D_S3_SECURE``, ``HPE3D_S3_BUCKET``), creates the bucket when it is
missing, and uploads every file under each ``--src`` to ``<prefix>/<path relative to src>`` (symlinks
followed, ``__pycache__`` skipped). HRNet / SimpleBaseline go up the same way from the folder
``hpe3d models export`` wrote (``--src DIR``, without ``--prune`` so the BlazePose models stay); Triton
(``--model-control-mode=none``) loads them at its next start (``kubectl rollout restart deployment/triton``). ``--file`` adds single files at a chosen key below the prefix
(for weights kept outside the repository folder). ``--prune`` removes objects under the prefix that
are not in the source. An object whose size and MD5 already match is not uploaded again, so every
Triton replica can run it at start-up.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from the image's /app or a checkout
    sys.path.insert(0, str(ROOT))

from services.common.settings import Settings  # noqa: E402

DEFAULT_SRC = ROOT / "services" / "triton" / "repository"


def plan(src: Path, prefix: str, extra: list[str]) -> dict[str, Path]:
    """Object key -> local file for everything to upload."""
    prefix = prefix.strip("/")
    files: dict[str, Path] = {}
    for path in sorted(src.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[f"{prefix}/{path.relative_to(src).as_posix()}"] = path
    files.update(plan_extra(prefix, extra))
    return files


def plan_extra(prefix: str, extra: list[str]) -> dict[str, Path]:
    """Object key -> local file for the ``--file LOCAL=KEY`` items."""
    prefix = prefix.strip("/")
    files: dict[str, Path] = {}
    for item in extra:
        local, sep, key = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--file wants LOCAL=KEY, got {item!r}")
        if not Path(local).is_file():
            raise SystemExit(f"--file {local}: no such file")
        files[f"{prefix}/{key.strip('/')}"] = Path(local)
    return files


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - compared with the S3 ETag, not used for security
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unchanged(client, bucket: str, have, path: Path, digest: str) -> bool:
    """Whether the stored object already holds this file: same size and MD5 (the plain ETag, or the
    md5 metadata this tool writes, since a multipart upload's ETag is not the MD5)."""
    if have is None or have.size != path.stat().st_size:
        return False
    etag = (have.etag or "").strip('"')
    if "-" not in etag:
        return etag == digest
    meta = client.stat_object(bucket, have.object_name).metadata
    return meta.get("x-amz-meta-md5") == digest


def upload(files: dict[str, Path], settings: Settings, prefix: str, prune: bool,
           wait_s: float = 120.0) -> tuple[int, int, int]:
    """Returns (uploaded, unchanged, removed)."""
    from minio import Minio

    client = Minio(settings.s3_endpoint, access_key=settings.s3_access_key,
                   secret_key=settings.s3_secret_key, secure=settings.s3_secure)
    deadline = time.monotonic() + wait_s
    while True:  # MinIO may still be starting when this runs as an initContainer
        try:
            if not client.bucket_exists(settings.s3_bucket):
                client.make_bucket(settings.s3_bucket)
            break
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            if time.monotonic() > deadline:
                raise SystemExit(f"object store {settings.s3_endpoint} not reachable: {exc}") from exc
            time.sleep(2)
    existing = {o.object_name: o for o in client.list_objects(settings.s3_bucket, prefix=prefix.strip("/") + "/",
                                                              recursive=True)}
    uploaded = unchanged = removed = 0
    for key, path in files.items():
        digest = _md5(path)
        if _unchanged(client, settings.s3_bucket, existing.get(key), path, digest):
            unchanged += 1
            continue
        client.fput_object(settings.s3_bucket, key, str(path), metadata={"md5": digest})
        uploaded += 1
        print(f"uploaded s3://{settings.s3_bucket}/{key}", flush=True)
    if prune:
        for key in sorted(set(existing) - set(files)):
            client.remove_object(settings.s3_bucket, key)
            removed += 1
            print(f"removed s3://{settings.s3_bucket}/{key}", flush=True)
    return uploaded, unchanged, removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, action="append",
                        help=f"a model repository folder (repeatable; default {DEFAULT_SRC.relative_to(ROOT)})")
    parser.add_argument("--prefix", default="models", help="key prefix in the bucket (Triton's repository root)")
    parser.add_argument("--file", action="append", default=[], metavar="LOCAL=KEY",
                        help="also upload LOCAL as <prefix>/KEY (repeatable)")
    parser.add_argument("--prune", action="store_true", help="remove objects under the prefix not in the source")
    args = parser.parse_args(argv)
    files: dict[str, Path] = {}
    for src in args.src or [DEFAULT_SRC]:
        if not src.is_dir():
            print(f"error: model repository {src} is not a folder", file=sys.stderr)
            return 1
        found = plan(src, args.prefix, [])
        if not found:
            print(f"error: {src} holds no files", file=sys.stderr)
            return 1
        files.update(found)
    files.update(plan_extra(args.prefix, args.file))
    settings = Settings.from_env()
    uploaded, unchanged, removed = upload(files, settings, args.prefix, args.prune)
    print(f"model repository s3://{settings.s3_bucket}/{args.prefix.strip('/')}: {uploaded} uploaded, "
          f"{unchanged} unchanged, {removed} removed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
