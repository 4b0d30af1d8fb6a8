"""The 2D models this stage can run, and one segment through the one asked for.

``PoseModelCatalog`` keeps the BlazePose client, the person detector's client and one client per
top-down model that has been asked for (created on first use: each reads its model's config from
Triton). It answers ``ListModels`` from what Triton has ready now, and ``estimate`` runs a segment
through the person detector and the keypoint model named by ``EstimateRequest.pose_model``
("" = ``blazepose``): every person, tracked (``people.estimate_segment_people``).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from hpe3d.v1 import common_pb2
from services.common.cancellation import NEVER, CancelToken
from services.common.errors import DependencyUnavailable, InvalidInput, WeightsMissing
from services.common.pose_models import DEFAULT_POSE_MODEL, POSE_MODELS, how_to_supply, unknown_model_message
from services.pose2d.client import BlazePoseModels
from services.pose2d.keypoint_followers import BlazePoseFollower, KeypointFollower, TopDownFollower
from services.pose2d.people import PeopleOptions, estimate_segment_people
from services.pose2d.person_detector import PersonDetectorModel
from services.pose2d.topdown_client import HeatmapModel


@dataclass(frozen=True)
class OfferedModel:
    """A model offered now, with the input size its server reports."""

    name: str
    kind: str                          # "landmarks" or "top-down"
    input_width: int
    input_height: int
    triton_models: tuple[str, ...]


class PoseModelCatalog:
    """``blazepose``: the BlazePose client; ``topdown_factory(name)``: a ``HeatmapModel`` for a
    top-down model, raising ``LookupError`` when the server does not have it ready;
    ``ready_models()``: the names of the Triton models ready now; ``detector_factory()``: the person
    detector's client (``LookupError`` when the server does not have it ready)."""

    def __init__(self, blazepose: BlazePoseModels, topdown_factory: Callable[[str], HeatmapModel],
                 ready_models: Callable[[], set[str]], flip_test: bool = True,
                 detector_factory: Callable[[], PersonDetectorModel] | None = None):
        self.blazepose = blazepose
        self._factory = topdown_factory
        self._ready_models = ready_models
        self.flip_test = flip_test
        self._detector_factory = detector_factory
        self._detector: PersonDetectorModel | None = None
        self._topdown: dict[str, HeatmapModel] = {}
        self._lock = threading.Lock()

    def detector(self) -> PersonDetectorModel:
        """The person detector's client; ``DependencyUnavailable`` while the server does not have it."""
        with self._lock:
            if self._detector is None:
                if self._detector_factory is None:
                    raise DependencyUnavailable("no person detector configured")
                try:
                    self._detector = self._detector_factory()
                except LookupError as exc:
                    raise DependencyUnavailable(str(exc)) from exc
            return self._detector

    def topdown(self, name: str) -> HeatmapModel:
        """The client of top-down model ``name``; ``WeightsMissing`` (naming the checkpoint to supply)
        when the server does not have it."""
        with self._lock:
            if name not in self._topdown:
                try:
                    self._topdown[name] = self._factory(name)
                except LookupError as exc:
                    raise WeightsMissing(f"pose_model {name} is not loaded ({exc}): {how_to_supply(name)}") from exc
            return self._topdown[name]

    def estimate(self, segment: common_pb2.FrameSegment, pose_model: str, max_persons: int,
                 cancel: CancelToken = NEVER) -> common_pb2.Poses2D:
        name = pose_model or DEFAULT_POSE_MODEL
        if name not in POSE_MODELS:
            raise InvalidInput(unknown_model_message(name))
        follower: KeypointFollower
        if POSE_MODELS[name].family == "blazepose":
            follower = BlazePoseFollower(self.blazepose)
        else:
            follower = TopDownFollower(self.topdown(name), self.flip_test)
        return estimate_segment_people(segment, self.detector(), follower, PeopleOptions(max_persons=max_persons),
                                       cancel)

    def offered(self) -> list[OfferedModel]:
        """The models whose Triton models are all ready now, with the input sizes of their configs
        (BlazePose: the landmark crop; top-down: the person crop)."""
        ready = self._ready_models()
        out = []
        for model in POSE_MODELS.values():
            if not set(model.triton_models) <= ready:
                continue
            if model.family == "blazepose":
                width = height = self.blazepose.info.landmark_size
            else:
                try:
                    info = self.topdown(model.name).info
                except WeightsMissing:
                    continue
                width, height = info.width, info.height
            out.append(OfferedModel(model.name, model.kind, width, height, model.triton_models))
        return out

    def close(self) -> None:
        for model in [*self._topdown.values(), self._detector]:
            close = getattr(model, "close", None)
            if close:
                close()
