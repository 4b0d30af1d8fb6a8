"""What a failed Triton request means for a job: the one mapping both Triton clients of this stage
(``client.TritonBlazePose``, ``topdown_client.TritonTopDown``) use.

Triton answers with gRPC status codes; sorted here into

* **outages**, worth waiting for (``DependencyUnavailable`` -> UNAVAILABLE, which the job worker
  retries within its outage budget): the server cannot be reached (UNAVAILABLE, connection refused),
  a request timed out (DEADLINE_EXCEEDED), its queue is full (RESOURCE_EXHAUSTED), a model is still
  loading ("has no available versions", "is not ready"), and a model this client has already seen
  served and that is now unknown: the server restarted and has not bound it yet (a host binds
  its models a second or more after the port opens);
* **permanent errors**, reported at once: a model the server has never served to this client
  (``ModelNotServed`` -> FAILED_PRECONDITION: a model repository without it, a model not exported),
  and a request the server refuses (INVALID_ARGUMENT: wrong input name, shape, dtype or batch size;
  or a model that failed) as ``TritonRequestRefused`` -> INTERNAL: retrying the same tensors cannot
  help, so the job fails with Triton's own words instead of waiting out an outage that is not one.
"""
from __future__ import annotations

from services.common.errors import DependencyUnavailable, ModelNotServed

OUTAGE_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
LOADING_TEXTS = ("has no available versions", "is not ready", "is not at ready state")
UNKNOWN_MODEL_STATUS = "NOT_FOUND"


class TritonRequestRefused(RuntimeError):
    """Triton refused a request in a way a retry of the same request cannot change."""


def status_name(exc: Exception) -> str:
    """``UNAVAILABLE`` for a tritonclient exception whose status is ``StatusCode.UNAVAILABLE``; ""
    when it carries none."""
    status = getattr(exc, "status", None)
    text = str((status() if callable(status) else status) or "")
    return text.rsplit(".", 1)[-1]


def triton_error(exc: Exception, url: str, model: str, served_before: bool) -> Exception:
    """The domain error for ``exc``, raised by a request to ``model`` on the Triton server at ``url``;
    ``served_before``: this client has already had the model's config from that server."""
    status, text = status_name(exc), str(exc)
    if (status in OUTAGE_STATUSES or "failed to connect" in text.lower()
            or any(t in text for t in LOADING_TEXTS)):
        return DependencyUnavailable(f"Triton at {url} cannot run {model} now: {text}")
    if status == UNKNOWN_MODEL_STATUS or "unknown model" in text:
        if served_before:
            return DependencyUnavailable(f"Triton at {url} no longer serves {model} (restarting?): {text}")
        return ModelNotServed(f"Triton at {url} does not serve the model {model}: {text}")
    return TritonRequestRefused(f"Triton at {url} refused the request for {model}: {text}")
