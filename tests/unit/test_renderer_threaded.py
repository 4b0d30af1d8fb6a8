"""The render's decoding and encoding threads: order kept, errors raised in the caller, threads gone when the
caller stops early (a cancelled render)."""
import threading
import time
from pathlib import Path

import av
import pytest

from services.decoder.probe import probe_video
from services.renderer import video
from services.renderer.threaded import Behind, read_ahead
from services.renderer.video import render_video

from .test_renderer_video import walking_timeline

DATA = Path(__file__).resolve().parent.parent / "data"


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_read_ahead_keeps_order_and_runs_ahead():
    produced = []

    def numbers():
        for i in range(10):
            produced.append(i)
            yield i

    items = read_ahead(numbers(), depth=3, name="test-ahead")
    assert next(items) == 0
    time.sleep(0.3)
    assert len(produced) >= 4        # the thread went on while the caller waited: 1 handed out + 3 queued
    assert list(items) == list(range(1, 10))
    assert not _threads("test-ahead")


def test_read_ahead_raises_the_producers_error_and_closes_it_when_the_caller_stops():
    def failing():
        yield 1
        raise ValueError("broken frame")

    items = read_ahead(failing(), name="test-fail")
    assert next(items) == 1
    with pytest.raises(ValueError, match="broken frame"):
        next(items)
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield 0
        finally:
            closed.set()

    items = read_ahead(endless(), depth=2, name="test-stop")
    next(items)
    items.close()
    assert closed.is_set() and not _threads("test-stop")


def test_behind_consumes_in_order_and_raises_the_consumers_error():
    seen = []
    with Behind(seen.append, depth=2, name="test-behind") as behind:
        for i in range(20):
            behind.put(i)
        behind.finish()
    assert seen == list(range(20)) and not _threads("test-behind")

    def consume(item):
        if item == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Behind(consume, depth=1, name="test-error") as behind:
            for i in range(50):
                behind.put(i)
            behind.finish()
    assert not _threads("test-error")


def test_a_render_stopped_early_leaves_no_thread(tmp_path):
    path = str(DATA / "two_people_office_24f.mp4")
    info = probe_video(path).to_proto()
    progress = render_video(path, info, walking_timeline(10), str(tmp_path / "render.mp4"), every=5)
    assert next(progress) == 5
    progress.close()     # what a cancelled Render call does to the generator
    assert not _threads("render-")


class _Inline:
    """``Behind`` without a thread: each item consumed when it is put."""

    def __init__(self, consume, depth=0, name=""):
        self.consume = consume

    def put(self, item):
        self.consume(item)

    def finish(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


def _packets(path: str) -> list[bytes]:
    with av.open(path) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def test_threads_give_the_same_stream_as_one_thread(tmp_path, monkeypatch):
    path = str(DATA / "two_people_office_24f.mp4")
    info = probe_video(path).to_proto()
    timeline = walking_timeline(20, first=2)
    list(render_video(path, info, timeline, str(tmp_path / "threads.mp4")))
    monkeypatch.setattr(video, "read_ahead", lambda items, depth=0, name="": items)
    monkeypatch.setattr(video, "Behind", _Inline)
    list(video.render_video(path, info, timeline, str(tmp_path / "inline.mp4")))
    threaded, inline = _packets(str(tmp_path / "threads.mp4")), _packets(str(tmp_path / "inline.mp4"))
    assert len(threaded) == info.frame_count and threaded == inline
