"""A live session's recording: the JPEGs received while recording, bounded in bytes, and their
encoding into an H.264 MP4 at the rate they were captured at (PyAV), ready to become a job."""
from __future__ import annotations

import io
from fractions import Fraction

import av

MIN_FRAMES = 2


class RecordingFull(Exception):
    """The recording reached its byte limit; it takes no more frames."""


class Recording:
    """The frames of one recording, in the order received, up to ``limit_bytes`` of JPEG."""

    def __init__(self, limit_bytes: int):
        self.limit_bytes = limit_bytes
        self.jpegs: list[bytes] = []
        self.capture_ms: list[float] = []
        self.size = 0

    def add(self, jpeg: bytes, capture_ms: float) -> None:
        """Keep a frame; ``RecordingFull`` (keeping nothing) when it would pass the limit."""
        if self.size + len(jpeg) > self.limit_bytes:
            raise RecordingFull(f"the recording reached the upload limit of {self.limit_bytes // (1024 * 1024)} MB")
        self.jpegs.append(jpeg)
        self.capture_ms.append(capture_ms)
        self.size += len(jpeg)

    @property
    def fps(self) -> float:
        """The measured frame rate: frames over the capture time they span (0 with fewer than 2)."""
        if len(self.jpegs) < MIN_FRAMES:
            return 0.0
        span_s = (self.capture_ms[-1] - self.capture_ms[0]) / 1000
        return (len(self.jpegs) - 1) / span_s if span_s > 0 else 0.0

    def clear(self) -> None:
        self.jpegs, self.capture_ms, self.size = [], [], 0


def encode_mp4(jpegs: list[bytes], fps: float) -> bytes:
    """The JPEGs as an H.264 MP4 (yuv420p, browser-playable) at a constant ``fps``, every frame the
    first one's size (even sides); ``ValueError`` when a frame is not a JPEG or there is too little."""
    if len(jpegs) < MIN_FRAMES or fps <= 0:
        raise ValueError(f"a recording needs at least {MIN_FRAMES} frames over some time "
                         f"(got {len(jpegs)} at {fps:.1f} frames/s)")
    decoder = av.CodecContext.create("mjpeg", "r")
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = None
        for i, jpeg in enumerate(jpegs):
            try:
                frames = decoder.decode(av.Packet(jpeg))
            except av.FFmpegError as exc:
                raise ValueError(f"recorded frame {i} is not a decodable JPEG: {exc}") from exc
            for frame in frames:
                if stream is None:
                    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
                    stream.width, stream.height = frame.width // 2 * 2, frame.height // 2 * 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"preset": "veryfast", "crf": "20"}
                image = frame.reformat(width=stream.width, height=stream.height, format="yuv420p")
                image.pts = i
                for packet in stream.encode(image):
                    container.mux(packet)
        if stream is None:
            raise ValueError("no recorded frame could be decoded")
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
