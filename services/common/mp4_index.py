"""Why an MP4 / MOV file does not open: is its index (the ``moov`` box) missing?

An ISO base media file (MP4, MOV, M4V, 3GP) is a sequence of top-level boxes, each starting with
a 32-bit big-endian size and a four-letter type. The sample index lives in ``moov``; the frames in
``mdat``. Writers that put ``moov`` at the end (the default of FFmpeg and of most cameras) leave a
file without an index when the recording or the upload is cut short: FFmpeg then only says
"Invalid data found when processing input". This module walks the top-level boxes (reading only
their 8- or 16-byte headers) to tell that case apart.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# Types a file starts with when it is an ISO base media file.
_FIRST_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"}
_MAX_BOXES = 10_000


@dataclass(frozen=True)
class Box:
    type: str
    offset: int  # bytes from the start of the file
    size: int    # bytes, header included
    complete: bool  # the whole box lies within the file


def top_level_boxes(path: str) -> list[Box]:
    """The top-level boxes of ``path`` in file order; empty when the file is not an ISO base
    media file. A box whose size runs past the end of the file is the last one, ``complete``
    False."""
    boxes: list[Box] = []
    with open(path, "rb") as f:
        f.seek(0, 2)
        file_size = f.tell()
        offset = 0
        while offset + 8 <= file_size and len(boxes) < _MAX_BOXES:
            f.seek(offset)
            size, kind = struct.unpack(">I4s", f.read(8))
            if not boxes and kind not in _FIRST_BOX_TYPES:
                return []
            if size == 1:  # 64-bit size follows the type
                large = f.read(8)
                if len(large) < 8:
                    break
                size = struct.unpack(">Q", large)[0]
            elif size == 0:  # the box runs to the end of the file
                size = file_size - offset
            if size < 8:
                break  # corrupt header: stop walking
            name = kind.decode("latin-1")
            boxes.append(Box(name, offset, size, offset + size <= file_size))
            offset += size
    return boxes


def index_missing(path: str) -> bool:
    """True when ``path`` is an ISO base media file with frame data (``mdat``) but no complete
    ``moov`` box: a recording or upload cut before its index was written."""
    boxes = top_level_boxes(path)
    has_data = any(b.type == "mdat" for b in boxes)
    has_index = any(b.type == "moov" and b.complete for b in boxes)
    return has_data and not has_index
