"""Domain errors raised by the stages' plain functions.

``server.py`` files never build gRPC statuses by hand: the interceptor in ``grpc_server`` maps
these exceptions to status codes, with the exception's text as the human message.
"""
from __future__ import annotations

import grpc

from .job_scope import OutsideJob
from .storage import ObjectNotFound, StorageUnavailable


class InvalidInput(ValueError):
    """The caller sent something this stage cannot process (e.g. a file that is not a video)."""


class NoPersonFound(RuntimeError):
    """The input is valid but holds nobody to track."""


class DependencyUnavailable(ConnectionError):
    """A server this stage needs (Triton, storage) did not answer."""


class WeightsMissing(FileNotFoundError):
    """A model's weights file is absent; the message says which file to supply and where."""


def status_code_for(exc: BaseException) -> grpc.StatusCode:
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
    if isinstance(exc, WeightsMissing):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL
