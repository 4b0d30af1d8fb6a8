"""Receiving an upload (a video, or a photo for an image job): the request body is counted as it
arrives and refused past the limit.

Starlette's multipart parser spools the file part to a temporary file (in memory only up to 1 MiB),
so the video is never held in memory whole; it is then streamed to storage with ``put_stream``.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import Message, Receive

from ..jobs.manifest import JobOptions

MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and option fields around the file

# The form: the file, then every JobOptions field as JobOptions states it (types, bounds, wording).
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary", "description": (
                    "the video (MP4, MOV, WebM, ...) or a photo (JPEG, PNG, WebP: an image job)")},
                **JobOptions.model_json_schema()["properties"],
            }}}},
    }
}


class UploadRejected(Exception):
    """The upload cannot become a job; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, reason: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def too_large(limit_bytes: int) -> UploadRejected:
    return UploadRejected(413, f"upload larger than the limit of {limit_bytes // (1024 * 1024)} MB", "too_large")


@dataclass
class ReceivedUpload:
    file: UploadFile
    filename: str
    content_type: str
    size: int
    options: JobOptions


def check_content_length(request: Request, limit_bytes: int) -> None:
    """Refuse early, before reading anything, when the declared length is already too big."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes + MULTIPART_OVERHEAD:
        raise too_large(limit_bytes)


def _counting_receive(receive: Receive, limit_bytes: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit_bytes + MULTIPART_OVERHEAD:
                raise too_large(limit_bytes)
        return message
    return counted


async def read_multipart(request: Request, limit_bytes: int, not_multipart: str, max_files: int,
                         max_fields: int) -> FormData:
    """The multipart body, read within ``limit_bytes`` (413 past it), 415 with ``not_multipart`` when the body
    is not multipart/form-data, 400 when it cannot be read."""
    check_content_length(request, limit_bytes)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadRejected(415, not_multipart, "not_multipart")
    limited = Request(request.scope, _counting_receive(request.receive, limit_bytes))
    try:
        return await limited.form(max_files=max_files, max_fields=max_fields)
    except UploadRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - malformed multipart bodies
        raise UploadRejected(400, f"could not read the multipart body: {exc}", "malformed") from exc


async def receive_upload(request: Request, limit_bytes: int) -> ReceivedUpload:
    """Parse the multipart body (``file`` + option fields) within ``limit_bytes``."""
    form = await read_multipart(request, limit_bytes, "send the video or photo as multipart/form-data with a 'file' "
                                "field", max_files=1, max_fields=32)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise UploadRejected(422, "missing the 'file' field with the video or photo", "no_file")
    size = upload.size if upload.size is not None else 0
    if size > limit_bytes:
        raise too_large(limit_bytes)
    if size == 0:
        raise UploadRejected(422, "empty upload", "empty")
    fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str) and v != ""}
    try:
        options = JobOptions.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UploadRejected(422, f"invalid options: {problems}", "bad_options") from exc
    return ReceivedUpload(file=upload, filename=upload.filename or "", content_type=upload.content_type or
                          "application/octet-stream", size=size, options=options)
