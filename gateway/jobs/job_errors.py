"""How a job fails: ``JobFailed`` carries the ``JobError`` a person reads (stage, code, message)."""
from __future__ import annotations

import grpc

from .manifest import JobError
from .outage import TRANSIENT_GRPC, OutageTooLong, describe

# Job error codes that mean the upload itself is unusable: answered 422 at submission.
INPUT_ERRORS = ("INVALID_ARGUMENT", "VIDEO_TOO_LONG")


class JobFailed(Exception):
    """Ends a job as failed with ``error``."""

    def __init__(self, error: JobError):
        super().__init__(f"{error.stage}: {error.code}: {error.message}")
        self.error = error


def error_from_rpc(stage: str, exc: grpc.aio.AioRpcError) -> JobError:
    """The job error a person reads when a stage call ended with ``exc``."""
    code = exc.code()
    details = exc.details() or code.name
    if code in TRANSIENT_GRPC:
        return JobError(stage=stage, code=code.name, message=f"dependency unavailable: {stage}: {details}")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
        return JobError(stage=stage, code=code.name, message=details)
    return JobError(stage=stage, code=code.name, message=f"{stage} failed: {details}")


def error_from_outage(stage: str, outage: OutageTooLong) -> JobError:
    """The job error after a dependency stayed down past the outage budget; ``stage`` is the step
    the job was at (a stage name, or ``jobs`` for the job's own bookkeeping)."""
    grpc_cause = isinstance(outage.cause, grpc.aio.AioRpcError)
    code = outage.cause.code().name if grpc_cause else "UNAVAILABLE"
    what = stage if grpc_cause else "storage"
    return JobError(stage=stage, code=code, message=(
        f"dependency unavailable: {what}: still down after {outage.waited_s:.0f} s (outage budget "
        f"HPE3D_OUTAGE_BUDGET_S): {describe(outage.cause)}"))
