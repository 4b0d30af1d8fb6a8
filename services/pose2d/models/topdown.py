"""The top-down 2D models (HRNet, SimpleBaseline): names, input sizes, official checkpoint files and
how to load them. Torch is imported only by ``build`` and ``load_checkpoint``.

A top-down model sees one person at a time: an RGB crop of ``height`` x ``width`` pixels around the
person (aspect 3:4), and gives one heatmap per COCO-17 joint at a quarter of that size. The
checkpoint names are those of the official releases (deep-high-resolution-net.pytorch's model zoo);
no weights ship with this project, an operator supplies them and exports them to ONNX
(``hpe3d models export NAME --weights FILE --repository DIR``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    def build(self):
        """A ``torch.nn.Module`` with random weights (eval mode)."""
        if self.family == "hrnet":
            from services.pose2d.models.hrnet import PoseHRNet
            model = PoseHRNet(width=self.size, num_joints=NUM_JOINTS)
        else:
            from services.pose2d.models.simplebaseline import PoseResNet
            model = PoseResNet(depth=self.size, num_joints=NUM_JOINTS)
        return model.eval()


TOPDOWN_MODELS = {m.name: m for m in (
    TopDownModel("hrnet_w32", "hrnet", 32, 192, 256, "pose_hrnet_w32_256x192.pth"),
    TopDownModel("hrnet_w32_384", "hrnet", 32, 288, 384, "pose_hrnet_w32_384x288.pth"),
    TopDownModel("hrnet_w48", "hrnet", 48, 192, 256, "pose_hrnet_w48_256x192.pth"),
    TopDownModel("hrnet_w48_384", "hrnet", 48, 288, 384, "pose_hrnet_w48_384x288.pth"),
    TopDownModel("simplebaseline_r50", "simplebaseline", 50, 192, 256, "pose_resnet_50_256x192.pth.tar"),
    TopDownModel("simplebaseline_r101", "simplebaseline", 101, 192, 256, "pose_resnet_101_256x192.pth.tar"),
    TopDownModel("simplebaseline_r152", "simplebaseline", 152, 192, 256, "pose_resnet_152_256x192.pth.tar"),
)}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message says which keys or shapes differ."""


def topdown_model(name: str) -> TopDownModel:
    """The model called ``name``; an unknown name raises ``KeyError`` listing the known ones."""
    try:
        return TOPDOWN_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown top-down model {name!r}; known: {', '.join(TOPDOWN_MODELS)}") from None


def official_state_dict(raw) -> dict:
    """The parameters of a loaded checkpoint: a plain state_dict (the released files), or one wrapped
    under ``state_dict`` / ``model`` with ``module.`` prefixes (saved from (Data)Parallel training)."""
    if isinstance(raw, dict):
        for key in ("state_dict", "model"):
            if key in raw and isinstance(raw[key], dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError("the checkpoint holds no state_dict")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in raw.items()}


def load_checkpoint(spec: TopDownModel, path: str | Path):
    """``spec``'s model with the weights of the official checkpoint ``path`` (eval mode, CPU).
    Raises ``FileNotFoundError`` naming the file, or ``CheckpointError`` naming the differing keys."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: supply the official checkpoint {spec.checkpoint} "
                                f"for {spec.name}")
    state = official_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model = spec.build()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
        raise CheckpointError(f"{path.name} is not a {spec.name} checkpoint ({spec.checkpoint}): "
                              + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()
