"""Which 2D models the pose2d stage offers, by name (``EstimateRequest.pose_model``, ``ListModels``).

* ``blazepose`` (the default): BlazePose GHUM, Triton models ``blazepose_detector`` +
  ``blazepose_landmarks``; its weights ship in a registry package (``make models``).
* the top-down models of ``models/topdown.py`` (``hrnet_w32``, ..., ``simplebaseline_r152``): Triton
  model of the same name, plus ``blazepose_detector`` for the person boxes. No weights ship: a model
  is offered only once an operator has exported the official checkpoint into Triton's repository
  and Triton has it ready; until then asking for it names the file to supply and how.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.pose2d.models import DETECTOR, LANDMARK_SIZE, LANDMARKS
from services.pose2d.models.topdown import TOPDOWN_MODELS

BLAZEPOSE = "blazepose"
DEFAULT_POSE_MODEL = BLAZEPOSE
KNOWN_POSE_MODELS = (BLAZEPOSE, *TOPDOWN_MODELS)


@dataclass(frozen=True)
class PoseModel:
    name: str
    kind: str                          # "landmarks" or "top-down"
    input_width: int
    input_height: int
    triton_models: tuple[str, ...]


def triton_models_of(name: str) -> tuple[str, ...]:
    """The Triton models ``name`` needs."""
    if name == BLAZEPOSE:
        return DETECTOR.name, LANDMARKS.name
    return name, DETECTOR.name


def how_to_supply(name: str) -> str:
    """What an operator does to make the top-down model ``name`` available."""
    spec = TOPDOWN_MODELS[name]
    return (f"supply the official checkpoint {spec.checkpoint} and run `hpe3d models export {name} --weights "
            f"{spec.checkpoint} --repository DIR` with DIR a model repository Triton serves (locally "
            "HPE3D_TRITON_REPOSITORIES; on GPU nodes upload it with deploy/tools/upload_model_repository.py)")


def unknown_model_message(name: str) -> str:
    return f"unknown pose_model {name!r}; known: {', '.join(KNOWN_POSE_MODELS)}"


def offered_models(ready: set[str], topdown_sizes: dict[str, tuple[int, int]]) -> list[PoseModel]:
    """The models whose Triton models are all in ``ready``; ``topdown_sizes`` gives each ready
    top-down model's crop (width, height) as the server reports it."""
    out = []
    if set(triton_models_of(BLAZEPOSE)) <= ready:
        out.append(PoseModel(BLAZEPOSE, "landmarks", LANDMARK_SIZE, LANDMARK_SIZE, triton_models_of(BLAZEPOSE)))
    for name in TOPDOWN_MODELS:
        if set(triton_models_of(name)) <= ready and name in topdown_sizes:
            w, h = topdown_sizes[name]
            out.append(PoseModel(name, "top-down", w, h, triton_models_of(name)))
    return out
