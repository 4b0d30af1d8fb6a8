"""Bounds of the live path (``Pose2D.Stream``, ``Lifter3D.Stream`` and the gateway's ``/v1/live``),
in one place: a live stream holds one server thread for as long as it is open, so each stage
replica takes a bounded number of them and keeps its other threads for batch jobs."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import Busy

#: Live streams one pose2d or lifter3d replica serves at once; one more is refused (RESOURCE_EXHAUSTED).
LIVE_STREAMS_PER_REPLICA = 4

#: Threads of a stage server that serves live streams: the batch calls' 8 plus one per live stream.
LIVE_STAGE_THREADS = 8 + LIVE_STREAMS_PER_REPLICA

#: A track unseen for more frames than this is forgotten by the live lifter (its window dropped).
LIVE_TRACK_MAX_GAP = 15


class StreamSlots:
    """Counts the live streams a replica has open (``open``), refusing one over ``limit`` with
    ``Busy``. ``on_change(open)`` is told every change (a Prometheus gauge's ``set``)."""

    def __init__(self, what: str, limit: int = LIVE_STREAMS_PER_REPLICA,
                 on_change: Callable[[int], None] | None = None):
        self.what = what
        self.limit = limit
        self.open = 0
        self._on_change = on_change or (lambda _open: None)
        self._lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._lock:
            if self.open >= self.limit:
                raise Busy(f"this replica already serves {self.limit} {self.what}; try again later")
            self.open += 1
            self._on_change(self.open)
        try:
            yield
        finally:
            with self._lock:
                self.open -= 1
                self._on_change(self.open)
