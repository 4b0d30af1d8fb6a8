"""What a job passes down to the stages per request (persons per frame, working size): the bound on
persons that the API and pose2d both enforce, and the one place where 0, "the server default",
becomes the value of the settings (``HPE3D_MAX_PERSONS``, ``HPE3D_WORKING_SIZE``)."""
from __future__ import annotations

from .settings import Settings

#: Most persons per frame one job (or one ``Pose2D.Estimate`` call) may ask for.
MAX_PERSONS_LIMIT = 16


def persons_per_frame(requested: int, settings: Settings) -> int:
    """``requested`` persons per frame, or the server default for 0."""
    return requested or settings.max_persons


def working_size(requested: int, settings: Settings) -> int:
    """``requested`` working size (longer side of decoded frames, pixels), or the server default for 0."""
    return requested or settings.working_size
