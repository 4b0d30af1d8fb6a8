"""Domain errors raised by the stages' plain functions.

``server.py`` files never build gRPC statuses by hand: the interceptor in ``grpc_server`` maps
these exceptions to status codes, with the exception's text as the human message.
"""
from __future__ import annotations

import grpc

from .cancellation import CallCancelled
from .job_scope import OutsideJob
from .storage import ObjectNotFound, StorageUnavailable


class InvalidInput(ValueError):
    """The caller sent something this stage cannot process (e.g. a file that is not a video)."""


class NoPersonFound(RuntimeError):
    """The input is valid but holds nobody to track. Build it with ``no_person_found`` so that
    every stage words it the same way."""


def no_person_found(frames_searched: int, frames_with_person: int = 0, *, still_image: bool = False,
                    max_persons: int = 0, longest_track: int = 0, min_track_frames: int = 0) -> NoPersonFound:
    """The one wording of "no person found", whichever stage finds it: what was searched (the
    image, or N frames; for up to ``max_persons`` persons when known) and what was found (no
    detection at all, or detections whose longest track is shorter than ``min_track_frames``)."""
    where = "the image" if still_image else f"{frames_searched} frame{'s' if frames_searched != 1 else ''}"
    limit = f" for up to {max_persons} person{'s' if max_persons != 1 else ''}" if max_persons > 0 else ""
    if frames_with_person <= 0:
        found = "nobody was detected"
    else:
        found = (f"{frames_with_person} of {frames_searched} frames had a detection, but the longest track "
                 f"has {longest_track} frame{'s' if longest_track != 1 else ''} and {min_track_frames} are needed")
    return NoPersonFound(f"no person found: searched {where}{limit}; {found}")


class DependencyUnavailable(ConnectionError):
    """A server this stage needs (Triton, storage) did not answer."""


class WeightsMissing(FileNotFoundError):
    """A model's weights file is absent; the message says which file to supply and where."""


class Busy(RuntimeError):
    """This replica already serves as many of these calls as it takes (live streams); try later or
    another replica."""


class ModelNotServed(LookupError):
    """The model server this stage calls has never served the model asked for (not in its repository)."""


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, CallCancelled):
        return grpc.StatusCode.DEADLINE_EXCEEDED if exc.deadline_passed else grpc.StatusCode.CANCELLED
    if isinstance(exc, OutsideJob):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, InvalidInput):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ObjectNotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, NoPersonFound):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, (StorageUnavailable, DependencyUnavailable)):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, (WeightsMissing, ModelNotServed)):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, Busy):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INTERNAL
