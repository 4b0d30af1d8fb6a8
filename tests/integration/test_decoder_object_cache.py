"""The decoder's cache of downloaded videos (real SeaweedFS store): reuse, re-download of an
overwritten object, and no deletion of a file a call may still be reading."""
from __future__ import annotations

import os

from gateway.jobs.manifest import new_job_id
from services.decoder.object_cache import DownloadedVideos


def _put(store, n: int) -> list:
    refs = []
    for i in range(n):
        key = f"jobs/{new_job_id()}/input/v{i}.mp4"
        store.put_bytes(key, f"video {i}".encode())
        refs.append(store.ref(key))
    return refs


def test_a_video_is_downloaded_once_and_again_when_overwritten(store, tmp_path):
    cache = DownloadedVideos(store, directory=str(tmp_path))
    ref, = _put(store, 1)
    first = cache.path_of(ref)
    assert cache.path_of(ref) == first and cache.downloads == 1
    store.put_bytes(ref.key, b"another video")
    assert open(cache.path_of(ref), "rb").read() == b"another video" and cache.downloads == 2


def test_files_in_recent_use_outlive_the_file_limit(store, tmp_path):
    busy = DownloadedVideos(store, max_files=1, directory=str(tmp_path / "busy"), keep_s=600)
    paths = [busy.path_of(r) for r in _put(store, 3)]
    assert all(os.path.exists(p) for p in paths)  # three calls may be reading them now
    idle = DownloadedVideos(store, max_files=1, directory=str(tmp_path / "idle"), keep_s=0)
    paths = [idle.path_of(r) for r in _put(store, 3)]
    assert [os.path.exists(p) for p in paths] == [False, False, True]
