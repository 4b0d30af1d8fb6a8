"""Losses that teach a 2D -> 3D lifter from 2D keypoint sequences alone (no 3D label anywhere).

The objective follows the geometric self-supervision of Chen et al. 2019 ("Unsupervised 3D pose estimation with
geometric self-supervision") with a learned 2D pose prior in the manner of ElePose (Wandt et al. 2022); the
code is ours. For a window of normalised 2D poses ``x`` (GAST-Net screen coordinates, see
:func:`services.lifter3d.keypoints2d.normalize_screen`):

1. **lift**: ``P = lifter(x)``, root-relative camera-frame joints;
2. **reprojection**: the root translation ``T`` that best places ``P`` on ``x`` is solved in closed form
   (perspective camera with the service's focal-length prior, :data:`K_PRIOR`), and ``P + T`` projected must land
   on ``x`` (error relative to the 2D pose's own size);
3. **virtual rotation**: ``Q = R P`` with ``R`` a random turn (any azimuth) about the camera's vertical axis, or
   about the person's own vertical as the camera sees it (the axis then carries the camera's pitch, as ElePose's
   elevation does), and a small tilt, placed at the same ``T`` and projected: ``x'``, what a camera elsewhere
   would have seen;
4. **lift again**: ``P' = lifter(x')`` must equal ``Q`` (3D consistency), and ``R^-1 P'`` placed at ``T`` and
   projected must give back ``x`` (2D consistency);
5. **pose prior**: ``x'`` must look like real 2D: its negative log-likelihood under a normalising flow trained
   on 2D poses (:mod:`training.pose_flow`);
6. **skeleton**: left and right bones of equal length; every bone of constant length over the window;
   the mean limb length held at an adult's (:data:`LIMB_LENGTH_M`), which fixes the metric scale that 2D alone
   cannot give.

Depth and scale: the network predicts root-relative 3D; the root depth comes from the closed-form fit of step 2,
and the overall size from the limb-length prior of step 6 (a single anthropometric constant, not a label).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from services.common.skeletons import H36M17
from services.lifter3d.camera import PRIOR_FOV_DEG
from services.lifter3d.model import LIMB_BONES  # the eight limb bones the scale prior averages

#: Focal length in GAST-Net's normalised screen units (``2 f / width``) of the service's field-of-view prior
#: (57.5 degrees across the width of a landscape frame).
K_PRIOR = 1.0 / math.tan(math.radians(PRIOR_FOV_DEG) / 2)

#: Mean length, in metres, of the eight limb bones (upper arms, forearms, thighs, shanks) of an adult 1.70 m
#: tall, from the segment-length fractions of stature of Drillis & Contini (1966) as tabulated in Winter,
#: "Biomechanics and Motor Control of Human Movement": upper arm 0.186, forearm 0.146, thigh 0.245,
#: leg 0.246 of the stature -> (0.186 + 0.146 + 0.245 + 0.246) / 4 x 1.70 m.
STATURE_M = 1.70
#: Segment lengths as fractions of stature (same source): upper arm, forearm, thigh, leg (shank).
SEGMENT_FRACTIONS = {"upper_arm": 0.186, "forearm": 0.146, "thigh": 0.245, "shank": 0.246}
LIMB_LENGTH_M = sum(SEGMENT_FRACTIONS.values()) / len(SEGMENT_FRACTIONS) * STATURE_M

_BONES = H36M17.bones
_BONE_INDEX = {bone: i for i, bone in enumerate(_BONES)}
#: (left bone, right bone) pairs as indices into ``H36M17.bones``: hip, thigh, shank, shoulder, upper arm, forearm.
SYMMETRIC_BONES = tuple((_BONE_INDEX[l], _BONE_INDEX[r]) for l, r in (
    ((0, 4), (0, 1)), ((4, 5), (1, 2)), ((5, 6), (2, 3)),
    ((8, 11), (8, 14)), ((11, 12), (14, 15)), ((12, 13), (15, 16))))


def bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """``[..., 17, 3]`` Human3.6M joints -> ``[..., 16]`` lengths of the bones in ``H36M17.bones``."""
    parents, children = zip(*_BONES)
    return torch.linalg.vector_norm(joints[..., list(children), :] - joints[..., list(parents), :], dim=-1)


# ------------------------------------------------------------------------------------------ camera geometry
def project(points: torch.Tensor, k: float = K_PRIOR, min_depth: float = 0.1) -> torch.Tensor:
    """Camera-frame points ``[..., 3]`` -> normalised screen coordinates ``[..., 2]`` (``k X / Z``, ``k Y / Z``)."""
    return k * points[..., :2] / points[..., 2:3].clamp(min=min_depth)


def solve_root_translation(rel: torch.Tensor, uv: torch.Tensor, k: float = K_PRIOR,
                           min_depth: float = 0.5) -> torch.Tensor:
    """Root translation ``T [..., 3]`` that places root-relative joints ``rel [..., J, 3]`` on ``uv [..., J, 2]``.

    The perspective projection ``u = k (X + tx) / (Z + tz)`` rearranged to be linear in ``T``
    (``k tx - u tz = u Z - k X``, the same for ``v``) and solved by least squares over the joints, per frame;
    differentiable. ``tz`` is kept at least ``min_depth``.
    """
    u, v = uv[..., 0], uv[..., 1]
    x, y, z = rel.unbind(-1)
    kk, zero = torch.full_like(u, k), torch.zeros_like(u)
    a = torch.cat([torch.stack([kk, zero, -u], -1), torch.stack([zero, kk, -v], -1)], dim=-2)  # [..., 2J, 3]
    b = torch.cat([u * z - k * x, v * z - k * y], dim=-1)  # [..., 2J]
    ata = a.transpose(-1, -2) @ a + 1e-6 * torch.eye(3, dtype=a.dtype, device=a.device)
    atb = (a.transpose(-1, -2) @ b.unsqueeze(-1)).squeeze(-1)
    t = torch.linalg.solve(ata, atb)
    return torch.cat([t[..., :2], t[..., 2:].clamp(min=min_depth)], dim=-1)


def pose_scale_2d(uv: torch.Tensor) -> torch.Tensor:
    """Size of 2D poses ``[..., J, 2]``: RMS distance of the joints from the root (joint 0), ``[..., 1, 1]``."""
    return (uv - uv[..., :1, :]).square().sum(-1).mean(-1).sqrt().clamp(min=1e-3)[..., None, None]


def reprojection_error(rel: torch.Tensor, uv: torch.Tensor, k: float = K_PRIOR) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean distance between ``uv`` and the projection of ``rel`` placed by :func:`solve_root_translation`,
    relative to the 2D pose's size (a scalar), and the translation ``T [..., 3]`` used."""
    t = solve_root_translation(rel, uv, k)
    proj = project(rel + t[..., None, :], k)
    err = torch.linalg.vector_norm(proj - uv, dim=-1) / pose_scale_2d(uv.detach())[..., 0]
    return err.mean(), t


def rotation_matrices(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` rotations: a turn by ``azimuth`` about the camera's vertical (y) axis, then a tilt by
    ``elevation`` about its x axis (radians). Camera frame: x right, y down, z forward."""
    ca, sa, ce, se = azimuth.cos(), azimuth.sin(), elevation.cos(), elevation.sin()
    one, zero = torch.ones_like(ca), torch.zeros_like(ca)
    ry = torch.stack([torch.stack([ca, zero, sa], -1), torch.stack([zero, one, zero], -1),
                      torch.stack([-sa, zero, ca], -1)], -2)
    rx = torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, ce, -se], -1),
                      torch.stack([zero, se, ce], -1)], -2)
    return rx @ ry


def random_rotations(batch: int, generator: torch.Generator, max_elevation_deg: float = 15.0,
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """``[batch, 3, 3]`` rotations with uniform azimuth in [-180, 180) degrees and elevation uniform in
    +-``max_elevation_deg``."""
    az = (torch.rand(batch, generator=generator) * 2 - 1) * math.pi
    el = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(max_elevation_deg)
    return rotation_matrices(az, el).to(device)


def axis_rotations(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` rotations by ``angle [B]`` radians about unit vectors ``axis [B, 3]`` (Rodrigues)."""
    k = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp(min=1e-9)
    zero = torch.zeros_like(k[:, 0])
    kx = torch.stack([torch.stack([zero, -k[:, 2], k[:, 1]], -1), torch.stack([k[:, 2], zero, -k[:, 0]], -1),
                      torch.stack([-k[:, 1], k[:, 0], zero], -1)], -2)
    s, c = angle.sin()[:, None, None], angle.cos()[:, None, None]
    return torch.eye(3, dtype=k.dtype, device=k.device) + s * kx + (1 - c) * kx @ kx


def body_up(rel: torch.Tensor) -> torch.Tensor:
    """``[B, 3]`` unit "up" direction of each sequence of root-relative poses ``[B, T, 17, 3]`` in camera
    coordinates: from the ankles' midpoint to the thorax, averaged over the frames (people stand upright on
    average, so this is the world's vertical as the camera sees it, pitch included)."""
    ankles = rel[..., [H36M17.index("left_ankle"), H36M17.index("right_ankle")], :].mean(-2)
    up = (rel[..., H36M17.index("thorax"), :] - ankles).mean(1)
    return up / torch.linalg.vector_norm(up, dim=-1, keepdim=True).clamp(min=1e-9)


def random_turns_about(up: torch.Tensor, generator: torch.Generator,
                       max_elevation_deg: float = 10.0) -> torch.Tensor:
    """``[B, 3, 3]`` rotations: a turn by a uniform azimuth about each sequence's own vertical ``up [B, 3]`` (what
    a camera elsewhere at the same height would see), then a tilt within +-``max_elevation_deg`` about the
    camera's x axis."""
    b = up.shape[0]
    az = ((torch.rand(b, generator=generator) * 2 - 1) * math.pi).to(up)
    el = ((torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_elevation_deg)).to(up)
    return rotation_matrices(torch.zeros_like(el), el) @ axis_rotations(up, az)


def rotate(rel: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Root-relative poses ``[B, T, J, 3]`` turned by one rotation ``r [B, 3, 3]`` per sequence."""
    return torch.einsum("bij,btkj->btki", r, rel)


def consistency_3d_error(lifted_again: torch.Tensor, rotated: torch.Tensor,
                         limb_length: float = LIMB_LENGTH_M) -> torch.Tensor:
    """Mean joint distance between the lift of the rotated projection and the rotated first lift, in units of
    ``limb_length`` (0 when the lifter is consistent under the rotation)."""
    return torch.linalg.vector_norm(lifted_again - rotated, dim=-1).mean() / limb_length


def consistency_2d_error(lifted_again: torch.Tensor, r: torch.Tensor, trans: torch.Tensor, uv: torch.Tensor,
                         k: float = K_PRIOR) -> torch.Tensor:
    """The lift of the rotated projection turned back by ``r^-1``, placed at ``trans [B, T, 3]`` and projected,
    against the original 2D ``uv``: mean distance relative to the 2D pose's size."""
    back = rotate(lifted_again, r.transpose(-1, -2))
    uv_back = project(back + trans[..., None, :], k)
    return (torch.linalg.vector_norm(uv_back - uv, dim=-1) / pose_scale_2d(uv)[..., 0]).mean()


# ------------------------------------------------------------------------------------------ skeleton terms
def symmetry_error(rel: torch.Tensor) -> torch.Tensor:
    """Mean relative difference between the lengths of left and right twin bones (0 for a symmetric skeleton)."""
    lengths = bone_lengths(rel)
    left = lengths[..., [l for l, _ in SYMMETRIC_BONES]]
    right = lengths[..., [r for _, r in SYMMETRIC_BONES]]
    return ((left - right).abs() / ((left + right) / 2).clamp(min=1e-3)).mean()


def bone_variation(rel: torch.Tensor) -> torch.Tensor:
    """Mean over bones of (standard deviation / mean) of each bone's length along time; ``rel [B, T, 17, 3]``."""
    lengths = bone_lengths(rel)
    return (lengths.std(dim=1) / lengths.mean(dim=1).clamp(min=1e-3)).mean()


#: The segment of each of :data:`LIMB_BONES`, in their order.
_LIMB_SEGMENTS = ("thigh", "shank", "thigh", "shank", "upper_arm", "forearm", "upper_arm", "forearm")
#: Each limb bone's length relative to the mean of the eight, by :data:`SEGMENT_FRACTIONS`.
LIMB_PROPORTIONS = tuple(SEGMENT_FRACTIONS[s] / (sum(SEGMENT_FRACTIONS.values()) / len(SEGMENT_FRACTIONS))
                         for s in _LIMB_SEGMENTS)


#: Relative deviation from :data:`LIMB_PROPORTIONS` that :func:`proportion_error` forgives: skeletons differ (the
#: motion-capture rigs' upper arms are 15 % shorter than the table's), so only grossly wrong limbs count.
PROPORTION_TOLERANCE = 0.2


def proportion_error(rel: torch.Tensor, tolerance: float = PROPORTION_TOLERANCE) -> torch.Tensor:
    """Mean relative deviation beyond ``tolerance``, per frame, of each limb bone's share of the mean limb length
    from an adult's (:data:`LIMB_PROPORTIONS`: a thigh as long as a shank, a forearm 0.78 of an upper arm). A limb
    shortened in the image must then reach its length in depth, which a flat pose cannot; ``rel [..., 17, 3]``."""
    limbs = bone_lengths(rel)[..., list(LIMB_BONES)]
    share = limbs / limbs.mean(-1, keepdim=True).clamp(min=1e-4)
    target = torch.tensor(LIMB_PROPORTIONS, dtype=rel.dtype, device=rel.device)
    return torch.relu((share - target).abs() / target - tolerance).mean()


def scale_error(rel: torch.Tensor, limb_length: float = LIMB_LENGTH_M) -> torch.Tensor:
    """Relative deviation of each window's mean limb-bone length from ``limb_length``; ``rel [B, T, 17, 3]``."""
    mean_limb = bone_lengths(rel)[..., list(LIMB_BONES)].mean(dim=(1, 2))
    return (mean_limb / limb_length - 1).abs().mean()


#: Negative log-likelihood per dimension below which a 2D pose counts as fully plausible to the prior (the
#: flow's real 2D poses score about -2).
PRIOR_NLL_FLOOR = -3.0


def prior_penalty(nll: torch.Tensor, floor: float = PRIOR_NLL_FLOOR) -> torch.Tensor:
    """``log(1 + max(0, nll - floor))``: grows slowly for implausible poses, so an absurd pose early in training
    (whose likelihood under the flow is astronomically small) cannot swamp the geometric terms."""
    return torch.log1p(torch.relu(nll - floor))


# ------------------------------------------------------------------------------------------ the objective
@dataclass
class LossWeights:
    """Weights of the terms of :func:`self_supervised_losses` (all terms are unitless)."""

    reprojection: float = 1.0
    consistency_3d: float = 1.0  # divided by the limb length, so relative to the body's size
    consistency_2d: float = 0.5
    prior: float = 0.1
    symmetry: float = 0.5
    bone_variation: float = 1.0
    scale: float = 1.0
    proportion: float = 0.0  # limb proportions of an adult (proportion_error); 0 = left out

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def self_supervised_losses(model: torch.nn.Module, x: torch.Tensor, generator: torch.Generator,
                           weights: LossWeights, prior=None, limb_length: float = LIMB_LENGTH_M,
                           k: float = K_PRIOR, turn_about_body: bool = False) -> dict[str, torch.Tensor]:
    """Every term for one batch of 2D windows ``x [B, T, 17, 2]``; ``"total"`` is their weighted sum.

    The first lift yields ``T - rf + 1`` frames; the rotated projections of all of them are lifted again, which
    yields ``T - 2 (rf - 1)`` frames for the consistency terms (``T`` must exceed ``2 (rf - 1)``).
    ``prior`` is a 2D pose density with ``nll(uv [..., 17, 2]) -> [...]`` (e.g. :class:`training.pose_flow.PoseFlow`);
    without it the prior term is left out. ``limb_length`` (metres) is the mean limb length the scale term holds
    and the unit of the 3D consistency. Also returns ``"lifted"``: the first lift's root-relative output
    ``[B, T - rf + 1, 17, 3]`` (attached to the graph, for extra terms and monitoring). The virtual rotation
    turns about the camera's y axis (:func:`random_rotations`), or with ``turn_about_body`` about each sequence's
    own vertical (:func:`body_up`, :func:`random_turns_about`), which keeps the camera's pitch in the new view.
    Measured (``services/lifter3d/weights/MODEL_CARD_2d_only.md``): the body turn helps adaptation of a trained
    lifter and hurt training from scratch, where the network met it with a consistent but wrong pose.
    """
    rf = model.receptive_field()
    off = model.output_offset()
    b, t = x.shape[:2]
    if t <= 2 * (rf - 1):
        raise ValueError(f"windows of {t} frames are too short for two lifts of receptive field {rf}")
    n1 = t - rf + 1
    uv1 = x[:, off:off + n1]
    p = model(x)
    p = p - p[:, :, :1]
    reproj, trans = reprojection_error(p, uv1, k)
    r = random_turns_about(body_up(p.detach()), generator) if turn_about_body else \
        random_rotations(b, generator, device=x.device)
    q = rotate(p, r)
    uv_rot = project(q + trans[..., None, :], k)
    p2 = model(uv_rot)
    p2 = p2 - p2[:, :, :1]
    n2 = n1 - rf + 1
    mid = slice(off, off + n2)
    terms = {
        "reprojection": reproj,
        "consistency_3d": consistency_3d_error(p2, q[:, mid], limb_length),
        "consistency_2d": consistency_2d_error(p2, r, trans[:, mid], uv1[:, mid], k),
        "symmetry": (symmetry_error(p) + symmetry_error(p2)) / 2,
        "bone_variation": bone_variation(p),
        "scale": scale_error(p, limb_length),
    }
    if weights.proportion:
        terms["proportion"] = (proportion_error(p) + proportion_error(p2)) / 2
    if prior is not None:
        terms["prior"] = prior_penalty(prior.nll(uv_rot)).mean()
    w = weights.as_dict()
    total = sum(w[name] * value for name, value in terms.items())
    return {"total": total, **terms, "lifted": p}
