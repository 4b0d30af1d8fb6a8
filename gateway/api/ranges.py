"""HTTP ``Range: bytes=...`` parsing for artefact downloads (one range per request)."""
from __future__ import annotations

from dataclasses import dataclass


class RangeNotSatisfiable(ValueError):
    """The header asks for bytes the object does not have, or cannot be understood (-> 416)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range a ``Range`` header selects from an object of ``size`` bytes.

    ``None`` when there is no header (send the whole object). Supports ``a-b``, ``a-`` and the
    suffix form ``-n``; an end past the object is clipped as RFC 9110 says. Several ranges, other
    units or a start at or past the end raise ``RangeNotSatisfiable``.
    """
    if header is None or not header.strip():
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        raise RangeNotSatisfiable(f"unsupported range {header!r}")
    first, dash, last = spec.strip().partition("-")
    if not dash:
        raise RangeNotSatisfiable(f"malformed range {header!r}")
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0 or size == 0:
                raise RangeNotSatisfiable(f"empty suffix range {header!r}")
            return ByteRange(max(size - suffix, 0), size - 1)
        start = int(first)
        end = int(last) if last != "" else size - 1
    except ValueError as exc:
        raise RangeNotSatisfiable(f"malformed range {header!r}") from exc
    if start < 0 or start >= size or end < start:
        raise RangeNotSatisfiable(f"range {header!r} outside an object of {size} bytes")
    return ByteRange(start, min(end, size - 1))
