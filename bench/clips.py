"""Clips the benchmarks make from the development clip."""
from __future__ import annotations

from pathlib import Path

import av


def resized_copy(video: Path, width: int, height: int, out: Path) -> Path:
    """``video`` re-encoded at ``width`` x ``height`` (area scaling, libx264 crf 20, preset medium, its own rate)."""
    with av.open(str(video)) as source, av.open(str(out), "w") as target:
        stream = source.streams.video[0]
        encoder = target.add_stream("libx264", rate=stream.average_rate or 30)
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.options = {"crf": "20", "preset": "medium"}
        for frame in source.decode(stream):
            scaled = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
            scaled.pts = None
            for packet in encoder.encode(scaled):
                target.mux(packet)
        for packet in encoder.encode():
            target.mux(packet)
    return out
