"""What goes over ``/v1/live``, in one place (the README, the OpenAPI description and the page follow it).

Client -> server:

* binary message = one frame: an 8-byte header, the capture time in milliseconds on the client's own
  clock as a little-endian IEEE-754 double (``performance.now()`` in a page), then the JPEG bytes;
* text message = JSON ``{"type": "record_start"}`` or ``{"type": "record_stop"}``.

Server -> client, text messages of JSON, each with a ``type``: ``ready`` (once, at the start),
``frame`` (one per frame answered, ``results.frame_message``), ``recording`` (recording started),
``recorded`` (the job the recording became), ``dropped`` is a counter inside each ``frame``, and
``error`` (``detail`` says what; a frame that is not a JPEG is refused this way and the session goes on).
Options are query parameters of the WebSocket URL: ``max_persons`` (0..16, 0 = server default) and
``focal_px`` (the camera's focal length in pixels of the frames sent; 0 = a 57.5 degree field of view).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from pydantic import BaseModel, Field

from services.common.request_options import MAX_PERSONS_LIMIT

FRAME_HEADER = struct.Struct("<d")   # capture time, ms, little-endian double
JPEG_START = b"\xff\xd8"

#: WebSocket close codes this endpoint uses (RFC 6455 section 7.4.1)
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008        # bad options or messages
CLOSE_INVALID_DATA = 1007  # a frame the 2D stage could not read
CLOSE_SERVER_ERROR = 1011  # a stage failed
CLOSE_TRY_LATER = 1013     # a stage is down or has no room for another live stream


class LiveRefused(Exception):
    """A message this endpoint cannot take; the session goes on (the client is told ``detail``)."""


class LiveOptions(BaseModel):
    """The WebSocket URL's query parameters."""

    max_persons: int = Field(0, ge=0, le=MAX_PERSONS_LIMIT, description="most persons per frame; 0 = server default")
    focal_px: float = Field(0.0, ge=0.0, description="focal length in pixels of the frames sent; 0 = the prior")


@dataclass(frozen=True)
class LiveFrame:
    """One frame as received: its number in the session (from 0), capture time and JPEG."""

    index: int
    capture_ms: float
    jpeg: bytes


def parse_frame(data: bytes, index: int) -> LiveFrame:
    """A binary message -> ``LiveFrame``; ``LiveRefused`` when it is not header + JPEG."""
    if len(data) <= FRAME_HEADER.size + len(JPEG_START) or \
            data[FRAME_HEADER.size:FRAME_HEADER.size + len(JPEG_START)] != JPEG_START:
        raise LiveRefused(f"frame message {index} is not an 8-byte capture time followed by a JPEG "
                          f"({len(data)} bytes)")
    (capture_ms,) = FRAME_HEADER.unpack_from(data)
    return LiveFrame(index, capture_ms, data[FRAME_HEADER.size:])


CONTROL_TYPES = ("record_start", "record_stop")
