"""Object storage on the ``minio`` SDK: the one place that talks S3.

``ObjectStore`` creates its bucket on first use and retries transient failures (connection errors,
5xx answers) with exponential back-off. A missing object raises ``ObjectNotFound``.
"""
from __future__ import annotations

import io
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar

import urllib3
from minio import Minio
from minio.error import S3Error, ServerError

from hpe3d.v1 import common_pb2

from .settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}


class ObjectNotFound(KeyError):
    """The object (or its bucket) does not exist."""


class StorageUnavailable(ConnectionError):
    """The storage server could not be reached or kept failing after retries."""


class ObjectChanged(RuntimeError):
    """A conditional read was refused: the object's ETag is no longer the one asked for."""


class ObjectStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, retries: int = 4, backoff_s: float = 0.25):
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=120), maxsize=16,
                                   retries=False)
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                            http_client=http)
        self.bucket = bucket
        self.endpoint = endpoint
        self.retries = retries
        self.backoff_s = backoff_s
        self._bucket_ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "ObjectStore":
        return cls(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key,
                   settings.s3_bucket, secure=settings.s3_secure)

    # -- retry plumbing ---------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    raise ObjectNotFound(f"{what}: {exc.code}") from exc
                if attempt == self.retries or not exc.code or not exc.code.startswith(("Internal", "SlowDown", "ServiceUnavailable")):
                    raise
            except (ServerError, urllib3.exceptions.HTTPError, ConnectionError, OSError) as exc:
                if attempt == self.retries:
                    raise StorageUnavailable(f"{what}: storage at {self.endpoint} failed: {exc}") from exc
            log.warning("storage %s failed (attempt %d), retrying in %.2fs", what, attempt + 1, delay)
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return

        def make() -> None:
            if not self.client.bucket_exists(self.bucket):
                try:
                    self.client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        self._call(f"create bucket {self.bucket}", make)
        self._bucket_ready = True

    def ref(self, key: str) -> common_pb2.ObjectRef:
        return common_pb2.ObjectRef(bucket=self.bucket, key=key)

    def _bucket_of(self, ref_or_key: common_pb2.ObjectRef | str) -> tuple[str, str]:
        if isinstance(ref_or_key, str):
            return self.bucket, ref_or_key
        return ref_or_key.bucket or self.bucket, ref_or_key.key

    # -- objects ----------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> common_pb2.ObjectRef:
        self.ensure_bucket()
        self._call(f"put {key}", lambda: self.client.put_object(
            self.bucket, key, io.BytesIO(data), len(data), content_type=content_type))
        return self.ref(key)

    def put_stream(self, key: str, stream: BinaryIO, content_type: str = "application/octet-stream") -> int:
        """Upload a stream of unknown length (multipart, 16 MiB parts); returns its size.
        Not retried: a stream cannot be rewound in general."""
        self.ensure_bucket()
        counter = _CountingReader(stream)
        try:
            self.client.put_object(self.bucket, key, counter, -1, part_size=16 * 1024 * 1024,
                                   content_type=content_type)
        except S3Error:
            raise
        except (ServerError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailable(f"upload {key}: storage at {self.endpoint} failed: {exc}") from exc
        return counter.count

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> common_pb2.ObjectRef:
        self.ensure_bucket()
        self._call(f"put {key}", lambda: self.client.fput_object(self.bucket, key, path, content_type=content_type))
        return self.ref(key)

    def get_bytes(self, ref_or_key: common_pb2.ObjectRef | str) -> bytes:
        bucket, key = self._bucket_of(ref_or_key)

        def get() -> bytes:
            resp = self.client.get_object(bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
        return self._call(f"get {bucket}/{key}", get)

    def open_range(self, key: str, offset: int, length: int, if_match: str = "") -> Iterator[bytes]:
        """``length`` bytes of ``key`` from ``offset``, streamed in 256 KiB chunks. The request is made
        before this returns, so a missing object raises ``ObjectNotFound`` here, and with ``if_match``
        (an ETag, without quotes) the storage server answers only while the object still has that
        ETag (S3 ``If-Match``): a replaced object raises ``ObjectChanged`` instead of being read."""
        headers = {"If-Match": f'"{if_match}"'} if if_match else None

        def get():
            try:
                return self.client.get_object(self.bucket, key, offset=offset, length=length,
                                              request_headers=headers)
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    raise ObjectChanged(f"{key} no longer has ETag {if_match}") from exc
                raise
        resp = self._call(f"get {key}", get)
        return self._stream(resp)

    @staticmethod
    def _stream(resp) -> Iterator[bytes]:
        try:
            yield from resp.stream(256 * 1024)
        finally:
            resp.close()
            resp.release_conn()

    def get_file(self, ref_or_key: common_pb2.ObjectRef | str, path: str) -> None:
        bucket, key = self._bucket_of(ref_or_key)
        self._call(f"get {bucket}/{key}", lambda: self.client.fget_object(bucket, key, path))

    def size(self, ref_or_key: common_pb2.ObjectRef | str) -> int:
        bucket, key = self._bucket_of(ref_or_key)
        return self._call(f"stat {bucket}/{key}", lambda: self.client.stat_object(bucket, key)).size

    def stat(self, ref_or_key: common_pb2.ObjectRef | str) -> tuple[int, str]:
        """(size in bytes, ETag without quotes) of an object."""
        bucket, key = self._bucket_of(ref_or_key)
        info = self._call(f"stat {bucket}/{key}", lambda: self.client.stat_object(bucket, key))
        return info.size, (info.etag or "").strip('"')

    def exists(self, ref_or_key: common_pb2.ObjectRef | str) -> bool:
        try:
            self.size(ref_or_key)
            return True
        except ObjectNotFound:
            return False

    def list_keys(self, prefix: str) -> list[str]:
        self.ensure_bucket()
        return self._call(f"list {prefix}", lambda: [
            o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)])

    def list_keys_after(self, prefix: str, start_after: str = "", limit: int | None = None) -> list[str]:
        """Keys under ``prefix`` in key order, after ``start_after`` (a whole key), at most ``limit``."""
        self.ensure_bucket()

        def page() -> list[str]:
            found = self.client.list_objects(self.bucket, prefix=prefix, recursive=True,
                                             start_after=start_after or None)
            return [o.object_name for o in itertools.islice(found, limit)]
        return self._call(f"list {prefix}", page)

    def delete(self, key: str) -> None:
        """Delete one object (nothing happens when it does not exist)."""
        self._call(f"delete {key}", lambda: self.client.remove_object(self.bucket, key))

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list_keys(prefix)
        for key in keys:
            self._call(f"delete {key}", lambda k=key: self.client.remove_object(self.bucket, k))
        return len(keys)

    # -- protobuf messages (the storage codec) -------------------------------------------------
    def put_message(self, key: str, message) -> common_pb2.ObjectRef:
        return self.put_bytes(key, message.SerializeToString(), "application/x-protobuf")

    def get_message(self, ref_or_key: common_pb2.ObjectRef | str, message_type):
        msg = message_type()
        msg.ParseFromString(self.get_bytes(ref_or_key))
        return msg


class _CountingReader:
    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.count += len(chunk)
        return chunk
