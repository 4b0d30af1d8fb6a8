"""Build the top-down models in PyTorch and load the official checkpoints into them."""
from __future__ import annotations

from pathlib import Path

from services.common.pose_models import NUM_JOINTS, PoseModel


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model; the message says which keys or shapes differ."""


def build_model(spec: PoseModel):
    """``spec``'s ``torch.nn.Module`` with random weights (eval mode)."""
    if spec.backbone == "hrnet":
        from services.triton.topdown.hrnet import PoseHRNet
        model = PoseHRNet(width=spec.backbone_size, num_joints=NUM_JOINTS)
    elif spec.backbone == "simplebaseline":
        from services.triton.topdown.simplebaseline import PoseResNet
        model = PoseResNet(depth=spec.backbone_size, num_joints=NUM_JOINTS)
    else:
        raise ValueError(f"{spec.name} is not a top-down model with a PyTorch module here")
    return model.eval()


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


def load_checkpoint(spec: PoseModel, path: str | Path):
    """``spec``'s model with the weights of the official checkpoint ``path`` (eval mode, CPU).
    Raises ``FileNotFoundError`` naming the file, or ``CheckpointError`` naming the differing keys."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: supply the official checkpoint {spec.checkpoint} "
                                f"for {spec.name}")
    state = official_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model = build_model(spec)
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
