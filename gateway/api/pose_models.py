"""The 2D pose models a job may choose (``pose_model``): which exist is the one list of
``services/common/pose_models.py``; which are loaded now is asked of the pose2d stage
(``Pose2D.ListModels``), which knows what Triton has ready."""
from __future__ import annotations

import logging

import grpc
from pydantic import BaseModel, Field

from hpe3d.v1 import pose2d_pb2
from services.common.pose_models import POSE_MODELS, unknown_model_message
from services.common.stage_names import POSE2D

from ..jobs.stages import StageClients
from .upload import UploadRejected

log = logging.getLogger(__name__)

LIST_TIMEOUT_S = 10.0


class PoseModelView(BaseModel):
    name: str = Field(description="the value of the job option pose_model")
    kind: str = Field(description="landmarks (BlazePose: detector + landmark model) or top-down (heatmaps of "
                                  "person crops)")
    input_width: int = Field(description="crop width the model sees, pixels")
    input_height: int = Field(description="crop height the model sees, pixels")
    default: bool = Field(description="what an empty pose_model means")


class MissingPoseModelView(BaseModel):
    name: str
    checkpoint: str = Field(description="the official checkpoint file an operator supplies")
    how: str = Field(description="how an operator makes the model available")


class PoseModelList(BaseModel):
    models: list[PoseModelView] = Field(description="models loaded now; a job may choose any of them")
    not_loaded: list[MissingPoseModelView] = Field(description="known models whose weights are not loaded")


class PoseModelsUnavailable(Exception):
    """The pose2d stage did not answer; the message says why."""


async def list_pose_models(clients: StageClients) -> PoseModelList:
    try:
        reply = await clients.pose2d.ListModels(pose2d_pb2.ListModelsRequest(), timeout=LIST_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        raise PoseModelsUnavailable(f"the {POSE2D} stage cannot list its models: {exc.code().name}: "
                                    f"{exc.details() or ''}") from exc
    return PoseModelList(
        models=[PoseModelView(name=m.name, kind=m.kind, input_width=m.input_width, input_height=m.input_height,
                              default=m.is_default) for m in reply.models],
        not_loaded=[MissingPoseModelView(name=m.name, checkpoint=m.checkpoint, how=m.how) for m in reply.not_loaded])


async def check_pose_model(name: str, clients: StageClients) -> None:
    """Refuse (422) a ``pose_model`` that does not exist, or is not loaded now. When pose2d does not
    answer a known model is admitted: the stage refuses it later if the model is still missing."""
    if not name:
        return
    if name not in POSE_MODELS:
        raise UploadRejected(422, f"invalid options: {unknown_model_message(name)}", "bad_options")
    try:
        available = await list_pose_models(clients)
    except PoseModelsUnavailable as exc:
        log.warning("pose_model %s not checked at submission: %s", name, exc)
        return
    if any(m.name == name for m in available.models):
        return
    missing = next((m for m in available.not_loaded if m.name == name), None)
    offered = ", ".join(m.name for m in available.models) or "none"
    reason = missing.how if missing else "the pose2d stage does not offer it"
    raise UploadRejected(422, f"invalid options: pose_model {name!r} is not loaded ({reason}); loaded: {offered}",
                         "bad_options")
