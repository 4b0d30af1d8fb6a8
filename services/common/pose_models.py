"""The 2D pose models hpe3d knows, in one list: what a job may name as ``pose_model``.

Standard library only: the pose2d stage, the Triton image's export tool (``hpe3d models export``) and
the gateway all import it. What a served model takes and gives (tensor names, shapes, dtypes) is not
here: each model's ``config.pbtxt`` in ``services/triton`` says it, and the pose2d stage learns it
from the server.

* ``blazepose`` (the default): BlazePose GHUM's landmark model ``blazepose_landmarks`` on every person
  the ``person_detector`` (NanoDet) finds; the weights come from registry packages (``make models``,
  ``make detector``). BlazePose's own detector ``blazepose_detector`` belongs to it too (the client
  reads both BlazePose configs): the former single-person path that ``bench/eval_2d.py`` measures
  beside the new one.
* the top-down models (HRNet, SimpleBaseline): Triton model of the same name, plus
  ``person_detector`` for the person boxes. A top-down model sees one person at a time: an RGB
  crop of ``height`` x ``width`` pixels (aspect 3:4), and gives one heatmap per COCO-17 joint at a
  quarter of that size. No weights ship: an operator supplies the official checkpoint (file names
  of deep-high-resolution-net.pytorch's model zoo) and exports it (``hpe3d models export NAME
  --weights FILE --repository DIR``), which writes the model's config.pbtxt from this list.
"""
from __future__ import annotations

from dataclasses import dataclass

BLAZEPOSE = "blazepose"
BLAZEPOSE_DETECTOR = "blazepose_detector"     # Triton model names (folders of services/triton/repository*)
BLAZEPOSE_LANDMARKS = "blazepose_landmarks"
PERSON_DETECTOR = "person_detector"

NUM_JOINTS = 17             # COCO-17 heatmaps of a top-down model
HEATMAP_STRIDE = 4
# The official top-down code feeds RGB in [0, 1] normalised with the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PoseModel:
    """One 2D model. ``family`` "blazepose" or "topdown"; for a top-down model ``backbone`` "hrnet"
    (``backbone_size`` = width W) or "simplebaseline" (ResNet depth), ``width`` x ``height`` the crop
    its export takes, ``checkpoint`` the official file an operator supplies."""

    name: str
    family: str
    triton_models: tuple[str, ...]
    default: bool = False
    backbone: str = ""
    backbone_size: int = 0
    width: int = 0
    height: int = 0
    checkpoint: str = ""

    @property
    def kind(self) -> str:
        """How ``Pose2D.ListModels`` and ``GET /v1/models`` describe the family."""
        return "landmarks" if self.family == "blazepose" else "top-down"

    @property
    def heatmap_shape(self) -> tuple[int, int, int]:
        """A top-down model's heatmaps: (joints, height / 4, width / 4)."""
        return NUM_JOINTS, self.height // HEATMAP_STRIDE, self.width // HEATMAP_STRIDE


def _topdown(name: str, backbone: str, size: int, width: int, height: int, checkpoint: str) -> PoseModel:
    return PoseModel(name, "topdown", (name, PERSON_DETECTOR), backbone=backbone, backbone_size=size,
                     width=width, height=height, checkpoint=checkpoint)


POSE_MODELS = {m.name: m for m in (
    PoseModel(BLAZEPOSE, "blazepose", (PERSON_DETECTOR, BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS), default=True),
    _topdown("hrnet_w32", "hrnet", 32, 192, 256, "pose_hrnet_w32_256x192.pth"),
    _topdown("hrnet_w32_384", "hrnet", 32, 288, 384, "pose_hrnet_w32_384x288.pth"),
    _topdown("hrnet_w48", "hrnet", 48, 192, 256, "pose_hrnet_w48_256x192.pth"),
    _topdown("hrnet_w48_384", "hrnet", 48, 288, 384, "pose_hrnet_w48_384x288.pth"),
    _topdown("simplebaseline_r50", "simplebaseline", 50, 192, 256, "pose_resnet_50_256x192.pth.tar"),
    _topdown("simplebaseline_r101", "simplebaseline", 101, 192, 256, "pose_resnet_101_256x192.pth.tar"),
    _topdown("simplebaseline_r152", "simplebaseline", 152, 192, 256, "pose_resnet_152_256x192.pth.tar"),
)}
KNOWN_POSE_MODELS = tuple(POSE_MODELS)
DEFAULT_POSE_MODEL = next(m.name for m in POSE_MODELS.values() if m.default)
TOPDOWN_MODELS = {name: m for name, m in POSE_MODELS.items() if m.family == "topdown"}
TRITON_MODELS = tuple(sorted({t for m in POSE_MODELS.values() for t in m.triton_models}))


def unknown_model_message(name: str) -> str:
    return f"unknown pose_model {name!r}; known: {', '.join(KNOWN_POSE_MODELS)}"


def topdown_model(name: str) -> PoseModel:
    """The top-down model called ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return TOPDOWN_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown top-down model {name!r}; known: {', '.join(TOPDOWN_MODELS)}") from None


def how_to_supply(name: str) -> str:
    """What an operator does to make the top-down model ``name`` available."""
    model = topdown_model(name)
    return (f"supply the official checkpoint {model.checkpoint} and run `hpe3d models export {name} --weights "
            f"{model.checkpoint} --repository DIR` with DIR a model repository Triton serves (locally "
            "HPE3D_TRITON_REPOSITORIES; on GPU nodes upload it with deploy/tools/upload_model_repository.py)")
