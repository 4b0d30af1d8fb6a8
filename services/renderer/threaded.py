"""Two helpers that let the render's decoding, drawing and encoding run at the same time on different cores.

PyAV (decoding, scaling, encoding) and OpenCV release the GIL while they work, so a decoding thread ahead of
the drawing and an encoding thread behind it overlap for real. Both keep at most ``depth`` items in hand (the
memory stays a few frames), keep the order of the items, re-raise a worker's error in the caller, and stop
their thread when the caller stops early (a cancelled call closes the render's generator).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_POLL_S = 0.1


class _End:
    """The last item of a queue: the worker finished, or failed with ``error``."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` on ``q``, waiting for room; False when ``stop`` was set first."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def read_ahead(items: Iterator[T], depth: int = 4, name: str = "read-ahead") -> Iterator[T]:
    """The items of ``items``, produced by a thread that runs up to ``depth`` items ahead of the caller.
    ``items`` is closed in that thread when it ends or the caller stops."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if not _put(q, item, stop):
                    return
            _put(q, _End(), stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            _put(q, _End(exc), stop)
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        thread.join()


class Behind(Generic[T]):
    """Runs ``consume(item)`` on a thread for each item given to :meth:`put`, in order, at most ``depth``
    items behind the caller. :meth:`finish` waits for the last one; a failure of ``consume`` is raised by
    the next :meth:`put` or by :meth:`finish`. Use as a context manager: leaving it early stops the thread
    (items not consumed yet are dropped)."""

    def __init__(self, consume: Callable[[T], None], depth: int = 4, name: str = "behind"):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            if isinstance(item, _End) or self._stop.is_set():
                return
            try:
                self._consume(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        while True:
            self._raise_error()
            if not self._thread.is_alive():
                raise RuntimeError("the consuming thread has stopped")
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Wait until every item put has been consumed; raise the consumer's failure if there was one."""
        if self._thread.is_alive():
            self.put(_End())  # type: ignore[arg-type]
            self._thread.join()
        self._raise_error()

    def __enter__(self) -> "Behind[T]":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
