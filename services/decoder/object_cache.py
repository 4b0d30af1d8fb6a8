"""A small per-process cache of downloaded videos, so N Decode calls on one video download it once.

Files live in a private temp directory, named by a hash of (bucket, key). An entry is reused only
while the object's size and ETag in storage are unchanged (one cheap HEAD request per call), so an
overwritten upload is downloaded again. The least recently used files beyond ``max_files`` are
deleted once no call has asked for them for ``keep_s`` seconds (a path handed out is still being
read by its call; deleting it then made that call fail); a download lands under a temporary name and is renamed into place, so a reader never sees
a half-written file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict

from hpe3d.v1 import common_pb2
from services.common.storage import ObjectStore


class DownloadedVideos:
    def __init__(self, store: ObjectStore, max_files: int = 8, directory: str | None = None,
                 keep_s: float = 900.0):
        self.store = store
        self.max_files = max_files
        self.keep_s = keep_s
        self.directory = directory or tempfile.mkdtemp(prefix="hpe3d-decoder-")
        self._entries: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()  # -> (path, version)
        self._last_used: dict[tuple[str, str], float] = {}  # monotonic time a call last got the path
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self.downloads = 0

    def path_of(self, ref: common_pb2.ObjectRef) -> str:
        """Local path of the object's current content; downloads it when needed.
        Raises ``ObjectNotFound`` when the object does not exist."""
        bucket = ref.bucket or self.store.bucket
        ident = (bucket, ref.key)
        version = self._version(bucket, ref.key)
        with self._lock:
            key_lock = self._key_locks.setdefault(ident, threading.Lock())
        with key_lock:
            with self._lock:
                cached = self._entries.get(ident)
                if cached and cached[1] == version and os.path.exists(cached[0]):
                    self._entries.move_to_end(ident)
                    self._last_used[ident] = time.monotonic()
                    return cached[0]
            path = os.path.join(self.directory, hashlib.sha256(f"{bucket}/{ref.key}".encode()).hexdigest()[:32])
            partial = f"{path}.{threading.get_ident()}.part"
            self.store.get_file(common_pb2.ObjectRef(bucket=bucket, key=ref.key), partial)
            os.replace(partial, path)
            self.downloads += 1
            with self._lock:
                self._entries[ident] = (path, version)
                self._entries.move_to_end(ident)
                now = time.monotonic()
                self._last_used[ident] = now
                while len(self._entries) > self.max_files:
                    oldest = next(iter(self._entries))
                    if now - self._last_used.get(oldest, 0.0) < self.keep_s:
                        break  # still in use by a call: keep it (and the newer ones) for now
                    old_path, _ = self._entries.pop(oldest)
                    self._last_used.pop(oldest, None)
                    _remove(old_path)
            return path

    def _version(self, bucket: str, key: str) -> str:
        stat = self.store._call(f"stat {bucket}/{key}", lambda: self.store.client.stat_object(bucket, key))
        return f"{stat.size}:{stat.etag}"


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
