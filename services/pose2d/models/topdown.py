"""The top-down 2D models (HRNet, SimpleBaseline): names, input sizes and official checkpoint files.
Standard library only (the pose2d image reads it); the PyTorch side is ``checkpoint.py``.

A top-down model sees one person at a time: an RGB crop of ``height`` x ``width`` pixels around the
person (aspect 3:4), and gives one heatmap per COCO-17 joint at a quarter of that size. The
checkpoint names are those of the official releases (deep-high-resolution-net.pytorch's model zoo);
no weights ship with this project, an operator supplies them and exports them to ONNX
(``hpe3d models export NAME --weights FILE --repository DIR``).
"""
from __future__ import annotations

from dataclasses import dataclass

NUM_JOINTS = 17
HEATMAP_STRIDE = 4
# The official code feeds RGB in [0, 1] normalised with the ImageNet statistics.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TopDownModel:
    """One model: ``family`` "hrnet" (``size`` = width W) or "simplebaseline" (``size`` = ResNet
    depth); ``width`` x ``height`` the crop in pixels; ``checkpoint`` the official file name."""

    name: str
    family: str
    size: int
    width: int
    height: int
    checkpoint: str

    @property
    def heatmap_shape(self) -> tuple[int, int, int]:
        """(joints, height / 4, width / 4)."""
        return NUM_JOINTS, self.height // HEATMAP_STRIDE, self.width // HEATMAP_STRIDE


TOPDOWN_MODELS = {m.name: m for m in (
    TopDownModel("hrnet_w32", "hrnet", 32, 192, 256, "pose_hrnet_w32_256x192.pth"),
    TopDownModel("hrnet_w32_384", "hrnet", 32, 288, 384, "pose_hrnet_w32_384x288.pth"),
    TopDownModel("hrnet_w48", "hrnet", 48, 192, 256, "pose_hrnet_w48_256x192.pth"),
    TopDownModel("hrnet_w48_384", "hrnet", 48, 288, 384, "pose_hrnet_w48_384x288.pth"),
    TopDownModel("simplebaseline_r50", "simplebaseline", 50, 192, 256, "pose_resnet_50_256x192.pth.tar"),
    TopDownModel("simplebaseline_r101", "simplebaseline", 101, 192, 256, "pose_resnet_101_256x192.pth.tar"),
    TopDownModel("simplebaseline_r152", "simplebaseline", 152, 192, 256, "pose_resnet_152_256x192.pth.tar"),
)}


def topdown_model(name: str) -> TopDownModel:
    """The model called ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return TOPDOWN_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown top-down model {name!r}; known: {', '.join(TOPDOWN_MODELS)}") from None
