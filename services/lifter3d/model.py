"""2D -> 3D lifting networks: GAST-Net (graph attention spatio-temporal convolutions) and a per-frame MLP.

:class:`GASTNet` is an independent implementation of the architecture of GAST-Net (Liu et al., "A Graph
Attention Spatio-temporal Convolutional Network for 3D Human Pose Estimation in Video", ICRA 2021). Its module
tree, parameter names and tensor shapes follow the published checkpoints, so a state dict saved by the authors
(``torch.load(path)["model_pos"]``) loads into it unchanged when it is built with the same ``filter_widths`` and
``channels`` (27 frames: ``[3, 3, 3]`` and 128 channels; 81 frames: ``[3, 3, 3, 3]`` and 64 channels).

Tensor layout everywhere: input ``[B, T, 17, 2]`` (normalised screen coordinates, see
:func:`services.lifter3d.keypoints2d.normalize_screen`, joints in Human3.6M-17 order), output
``[B, T - receptive_field + 1, 17, 3]`` (camera frame x right / y down / z forward, root-relative, metres).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from services.common.skeletons import H36M17, H36M17_PARENTS

# Human3.6M-17 joint groups used by the local graph: limb ends and left/right twins.
_DISTAL = (3, 6, 10, 13, 16)


def skeleton_adjacency(parents: tuple[int, ...] = H36M17_PARENTS) -> torch.Tensor:
    """Row-normalised adjacency ``[J, J]`` of the skeleton tree with self loops (symmetric pattern)."""
    n = len(parents)
    a = torch.eye(n)
    for child, parent in enumerate(parents):
        if parent >= 0:
            a[child, parent] = a[parent, child] = 1.0
    return a / a.sum(dim=1, keepdim=True)


def _symmetry_mask(n: int) -> torch.Tensor:
    """Each joint linked to itself and to its left/right twin."""
    m = torch.eye(n, dtype=torch.bool)
    for l, r in zip(H36M17.left, H36M17.right):
        m[l, r] = m[r, l] = True
    return m


def _connection_mask(adj: torch.Tensor) -> torch.Tensor:
    """First-order neighbours for inner joints, neighbours up to two hops for limb ends."""
    first = adj > 0
    second = (adj @ adj) > 0
    distal = torch.zeros(adj.shape[0], dtype=torch.bool)
    distal[list(_DISTAL)] = True
    return torch.where(distal[:, None], second, first)


class ChannelwiseGraphConv(nn.Module):
    """Graph convolution with a separate softmax-normalised edge weighting per output channel.

    Self features and neighbour features go through two different weight matrices ``W[0]`` and ``W[1]``.
    """

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        """
        Args:
            in_features: features per joint going in.
            out_features: features per joint coming out.
            mask: ``[J, J]`` boolean; True where joint i may receive from joint j (diagonal included).
        """
        super().__init__()
        self.W = nn.Parameter(torch.empty(2, in_features, out_features))
        nn.init.xavier_uniform_(self.W, gain=1.414)
        self.register_buffer("mask", mask.clone(), persistent=False)
        self.e = nn.Parameter(torch.ones(out_features, int(mask.sum())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, J, Cin]`` -> ``[B, T, J, Cout]``."""
        c, j = self.e.shape[0], self.mask.shape[0]
        logits = torch.full((c, j, j), -9e15, dtype=x.dtype, device=x.device)
        logits[:, self.mask] = self.e
        weights = torch.softmax(logits, dim=2)  # [C, J, J]
        eye = torch.eye(j, dtype=x.dtype, device=x.device)
        own = torch.diagonal(weights, dim1=1, dim2=2).transpose(0, 1)  # [J, C]
        others = weights * (1 - eye)
        h_self = x @ self.W[0]
        h_nb = x @ self.W[1]
        return own * h_self + torch.einsum("cjk,btkc->btjc", others, h_nb)


class LocalGraph(nn.Module):
    """Two channel-wise graph convolutions (symmetry and connectivity graphs), fused by a 1x1 conv."""

    def __init__(self, adj: torch.Tensor, input_dim: int, output_dim: int, dropout: float):
        """
        Args:
            adj: ``[17, 17]`` skeleton adjacency (pattern used).
            input_dim: channels in.
            output_dim: channels out.
            dropout: dropout probability after fusion.
        """
        super().__init__()
        self.gcn_sym = ChannelwiseGraphConv(input_dim, output_dim, _symmetry_mask(adj.shape[0]))
        self.bn_1 = nn.BatchNorm2d(output_dim, momentum=0.1)
        self.gcn_con = ChannelwiseGraphConv(input_dim, output_dim, _connection_mask(adj))
        self.bn_2 = nn.BatchNorm2d(output_dim, momentum=0.1)
        self.cat_conv = nn.Conv2d(2 * output_dim, output_dim, 1, bias=False)
        self.cat_bn = nn.BatchNorm2d(output_dim, momentum=0.1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, J, C]`` -> ``[B, T, J, output_dim]``."""
        a = F.relu(self.bn_1(self.gcn_sym(x).permute(0, 3, 1, 2)))
        b = F.relu(self.bn_2(self.gcn_con(x).permute(0, 3, 1, 2)))
        y = self.dropout(F.relu(self.cat_bn(self.cat_conv(torch.cat((a, b), dim=1)))))
        return y.permute(0, 2, 3, 1)


class GlobalAttentionHead(nn.Module):
    """One head of non-local attention between all joints, plus a learned additive joint-to-joint map ``C_k``."""

    def __init__(self, num_joints: int, in_channels: int, inter_channels: int):
        """
        Args:
            num_joints: joints per frame.
            in_channels: channels in.
            inter_channels: channels of the embeddings and of the head's output.
        """
        super().__init__()
        self.g = nn.Conv1d(in_channels, inter_channels, 1)
        self.theta = nn.Conv1d(in_channels, inter_channels, 1)
        self.phi = nn.Conv1d(in_channels, inter_channels, 1)
        self.C_k = nn.Parameter(torch.zeros(num_joints, num_joints))
        self.concat_project = nn.Sequential(nn.Conv2d(2 * inter_channels, 1, 1, bias=False))
        for conv in (self.g, self.theta, self.phi, self.concat_project[0]):
            nn.init.kaiming_normal_(conv.weight)
        for conv in (self.g, self.theta, self.phi):
            nn.init.zeros_(conv.bias)


class MultiGlobalGraph(nn.Module):
    """Several :class:`GlobalAttentionHead` (``in_channels // inter_channels`` of them) whose outputs are
    concatenated and fused by a 1x1 conv. All heads are evaluated together in one batched computation."""

    def __init__(self, num_joints: int, in_channels: int, inter_channels: int, dropout: float):
        """
        Args:
            num_joints: joints per frame.
            in_channels: channels in (and out).
            inter_channels: channels per head.
            dropout: dropout probability after fusion.
        """
        super().__init__()
        heads = in_channels // inter_channels
        self.attentions = nn.ModuleList(GlobalAttentionHead(num_joints, in_channels, inter_channels)
                                        for _ in range(heads))
        self.cat_conv = nn.Conv2d(in_channels, in_channels, 1, bias=False)
        self.cat_bn = nn.BatchNorm2d(in_channels, momentum=0.1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, J, C]`` -> ``[B, T, J, C]``."""
        b, t, j, c = x.shape
        heads = self.attentions
        h, inter = len(heads), heads[0].g.out_channels

        def embed(name: str) -> torch.Tensor:
            w = torch.cat([getattr(m, name).weight[:, :, 0] for m in heads])  # [H*inter, C]
            bias = torch.cat([getattr(m, name).bias for m in heads])
            return (x @ w.t() + bias).view(b, t, j, h, inter)

        g, theta, phi = embed("g"), embed("theta"), embed("phi")
        proj = torch.stack([m.concat_project[0].weight[0, :, 0, 0] for m in heads])  # [H, 2*inter]
        a = (theta * proj[:, :inter]).sum(-1)  # [B, T, J, H]
        p = (phi * proj[:, inter:]).sum(-1)
        scores = F.leaky_relu(a.permute(0, 1, 3, 2)[..., :, None] + p.permute(0, 1, 3, 2)[..., None, :], 0.2)
        att = torch.softmax(scores, dim=-1) + torch.stack([m.C_k for m in heads])  # [B, T, H, J, J]
        y = att @ g.permute(0, 1, 3, 2, 4)  # [B, T, H, J, inter]
        y = y.permute(0, 2, 4, 1, 3)  # [B, H, inter, T, J]: channel = head * inter + i
        y = y.reshape(b, c, t, j)
        y = self.dropout(F.relu(self.cat_bn(self.cat_conv(y))))
        return y.permute(0, 2, 3, 1)


class GraphAttentionBlock(nn.Module):
    """Local graph + global attention on every frame; input, local and global features are concatenated and
    mapped by a 1x1 conv to ``2 * output_dim`` channels."""

    def __init__(self, adj: torch.Tensor, input_dim: int, output_dim: int, p_dropout: float):
        """
        Args:
            adj: ``[17, 17]`` skeleton adjacency.
            input_dim: channels in (``C``).
            output_dim: channels of the local branch; the block emits ``2 * output_dim``.
            p_dropout: dropout probability inside both branches.
        """
        super().__init__()
        self.local_graph_layer = LocalGraph(adj, input_dim, output_dim, p_dropout)
        self.global_graph_layer = MultiGlobalGraph(adj.shape[0], input_dim, input_dim // 4, p_dropout)
        self.cat_conv = nn.Conv2d(input_dim + output_dim + input_dim, 2 * output_dim, 1, bias=False)
        self.cat_bn = nn.BatchNorm2d(2 * output_dim, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, C, T, J]`` -> ``[B, 2 * output_dim, T, J]``."""
        y = x.permute(0, 2, 3, 1)
        y = torch.cat((y, self.local_graph_layer(y), self.global_graph_layer(y)), dim=-1)
        return F.relu(self.cat_bn(self.cat_conv(y.permute(0, 3, 1, 2))))


class TemporalLifterBase(nn.Module):
    """Shared bookkeeping of sequence lifters: receptive field, padding and causal alignment.

    A model with receptive field ``R`` maps ``T >= R`` input frames to ``T - R + 1`` output frames. Output ``i``
    describes input frame ``i + output_offset()``: the middle of its window (``i + (R - 1) // 2``), or its last
    frame (``i + R - 1``) for causal models.
    """

    def __init__(self, filter_widths: list[int], causal: bool):
        """
        Args:
            filter_widths: temporal kernel size of each block (odd numbers); their product is the receptive field.
            causal: whether outputs describe the last frame of their window (streaming) instead of the middle.
        """
        super().__init__()
        if any(fw % 2 == 0 or fw < 1 for fw in filter_widths):
            raise ValueError(f"filter widths must be odd and positive, got {filter_widths}")
        self.filter_widths = list(filter_widths)
        self.causal = causal
        self.pad: list[int] = []  # frames each block trims from either end
        self.causal_shift: list[int] = []  # per block, how far its residual slice moves towards the end
        dilation = 1
        for fw in self.filter_widths:
            self.pad.append((fw - 1) * dilation // 2)
            self.causal_shift.append(self.pad[-1] if causal else 0)
            dilation *= fw

    def receptive_field(self) -> int:
        """Input frames needed for one output frame."""
        return 1 + 2 * sum(self.pad)

    def total_causal_shift(self) -> int:
        """How many frames later than the window centre an output is aligned (0 unless causal)."""
        return sum(self.causal_shift)

    def output_offset(self) -> int:
        """Index of the input frame that output frame 0 describes."""
        return (self.receptive_field() - 1) // 2 + self.total_causal_shift()

    def _check_input(self, x: torch.Tensor, joints: int, features: int) -> None:
        if x.dim() != 4 or x.shape[2] != joints or x.shape[3] != features:
            raise ValueError(f"expected input [B, T, {joints}, {features}], got {list(x.shape)}")
        if x.shape[1] < self.receptive_field():
            raise ValueError(f"need at least {self.receptive_field()} frames, got {x.shape[1]}")


class GASTNet(TemporalLifterBase):
    """GAST-Net: dilated temporal convolutions interleaved with graph attention blocks.

    State-dict compatible with the official ``SpatioTemporalModel``.
    """

    def __init__(self, num_joints_in: int = 17, in_features: int = 2, num_joints_out: int = 17,
                 filter_widths: tuple[int, ...] = (3, 3, 3), causal: bool = False, dropout: float = 0.25,
                 channels: int = 64, adj: torch.Tensor | None = None, depth_only: bool = False,
                 limb_length_m: float | None = None):
        """
        Args:
            num_joints_in: joints in the input (17, Human3.6M order; the graph is built for 17).
            in_features: numbers per input joint (2: x, y).
            num_joints_out: joints in the output (must equal ``num_joints_in``: the graph keeps joints).
            filter_widths: temporal kernel widths; ``(3, 3, 3)`` -> 27 frames, ``(3, 3, 3, 3)`` -> 81 frames.
            causal: align each output with the last frame of its window (for streaming).
            dropout: dropout probability.
            channels: width of the first block; block ``i`` works at ``2**i * channels``.
            adj: ``[J, J]`` skeleton adjacency; defaults to the Human3.6M-17 tree.
            depth_only: the network sees each frame's 2D pose centred on its root and divided by its size, and
                predicts only each joint's depth relative to the root in that unit; x and y are the input's own
                (weak perspective), and :meth:`forward` scales the pose to metres so that the mean limb length is
                ``limb_length_m`` (:func:`depth_only_pose`). Same parameters as the plain network (only the
                depth channel of the last layer is used).
            limb_length_m: mean length in metres of the eight limb bones of a ``depth_only`` output.
        """
        super().__init__(list(filter_widths), causal)
        if num_joints_in != 17 or num_joints_out != 17:
            raise ValueError("GASTNet is built for the 17-joint Human3.6M graph")
        if channels % 4:
            raise ValueError(f"channels must be divisible by 4 (attention heads), got {channels}")
        adj = skeleton_adjacency() if adj is None else adj
        self.num_joints_in, self.in_features, self.num_joints_out = num_joints_in, in_features, num_joints_out
        self.channels = channels
        if depth_only and not limb_length_m:
            raise ValueError("a depth_only GASTNet needs limb_length_m (the metric size of its output)")
        self.depth_only, self.limb_length_m = depth_only, limb_length_m
        self.drop = nn.Dropout(dropout)
        self.init_bn = nn.BatchNorm2d(in_features, momentum=0.1)
        self.expand_conv = nn.Conv2d(in_features, channels, (self.filter_widths[0], 1), bias=False)
        nn.init.kaiming_normal_(self.expand_conv.weight)
        self.expand_bn = nn.BatchNorm2d(channels, momentum=0.1)
        convs, bns, graphs = [], [], [GraphAttentionBlock(adj, channels, channels, dropout)]
        dilation = self.filter_widths[0]
        for i, fw in enumerate(self.filter_widths[1:], start=1):
            width = 2 ** i * channels
            convs += [nn.Conv2d(width, width, (fw, 1), dilation=(dilation, 1), bias=False),
                      nn.Conv2d(width, width, 1, bias=False)]
            bns += [nn.BatchNorm2d(width, momentum=0.1), nn.BatchNorm2d(width, momentum=0.1)]
            graphs.append(GraphAttentionBlock(adj, width, width, dropout))
            dilation *= fw
        self.layers_conv = nn.ModuleList(convs)
        self.layers_bn = nn.ModuleList(bns)
        self.layers_graph_conv = nn.ModuleList(graphs)
        self.shrink = nn.Conv2d(2 ** len(self.filter_widths) * channels, 3, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, 17, 2]`` -> ``[B, T - receptive_field + 1, 17, 3]``."""
        self._check_input(x, self.num_joints_in, self.in_features)
        if not self.depth_only:
            return self._network(x)
        centred, _ = centre_and_scale_2d(x)
        off = self.output_offset()
        depth = self._network(centred)[..., 2]
        xy = centred[:, off:off + depth.shape[1]]
        return depth_only_pose(xy, depth, self.limb_length_m)

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        x = self.init_bn(x.permute(0, 3, 1, 2))
        x = F.relu(self.expand_bn(self.expand_conv(x)))
        x = self.layers_graph_conv[0](x)
        for i in range(len(self.filter_widths) - 1):
            pad, shift = self.pad[i + 1], self.causal_shift[i + 1]
            res = x[:, :, pad + shift: x.shape[2] - pad + shift]
            x = F.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x)))
            x = res + self.drop(F.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
            x = self.layers_graph_conv[i + 1](x)
        return self.shrink(x).permute(0, 2, 3, 1)


#: Indices into ``H36M17.bones`` of the eight limb bones (upper arms, forearms, thighs, shanks).
LIMB_BONES = tuple(H36M17.bones.index(b) for b in ((4, 5), (5, 6), (1, 2), (2, 3), (11, 12), (12, 13), (14, 15),
                                                   (15, 16)))


def centre_and_scale_2d(uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2D poses ``[..., J, 2]`` less their root (joint 0), divided by their size (RMS distance of the joints from
    the root, ``[..., 1, 1]``, also returned): what a ``depth_only`` network sees, free of where the person
    stands in the frame and how large they appear."""
    rel = uv - uv[..., :1, :]
    size = rel.square().sum(-1).mean(-1).sqrt().clamp(min=1e-4)[..., None, None]
    return rel / size, size


def depth_only_pose(xy: torch.Tensor, depth: torch.Tensor, limb_length_m: float) -> torch.Tensor:
    """Root-relative 3D ``[..., J, 3]`` in metres from size-normalised 2D ``xy [..., J, 2]`` and predicted depths
    ``depth [..., J]`` in the same unit: ``(x, y, depth - depth_root)`` scaled per frame so that the mean of the
    :data:`LIMB_BONES` is ``limb_length_m``."""
    pose = torch.cat([xy, (depth - depth[..., :1])[..., None]], dim=-1)
    parents, children = zip(*(H36M17.bones[i] for i in LIMB_BONES))
    limbs = torch.linalg.vector_norm(pose[..., list(children), :] - pose[..., list(parents), :], dim=-1)
    return pose * (limb_length_m / limbs.mean(-1).clamp(min=1e-4))[..., None, None]


class BaselineMLP(TemporalLifterBase):
    """Per-frame lifter in the style of Martinez et al. (2017): linear -> residual blocks -> linear.

    Same input/output convention as :class:`GASTNet` with a receptive field of one frame.
    """

    def __init__(self, num_joints: int = 17, hidden: int = 1024, blocks: int = 2, dropout: float = 0.25):
        """
        Args:
            num_joints: joints in and out.
            hidden: width of the hidden layers.
            blocks: number of residual blocks (two linear layers each).
            dropout: dropout probability.
        """
        super().__init__([1], causal=False)
        self.num_joints = num_joints
        self.inp = nn.Sequential(nn.Linear(num_joints * 2, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout),
                          nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout))
            for _ in range(blocks))
        self.out = nn.Linear(hidden, num_joints * 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, J, 2]`` -> ``[B, T, J, 3]``."""
        self._check_input(x, self.num_joints, 2)
        b, t = x.shape[:2]
        h = self.inp(x.reshape(b * t, -1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view(b, t, self.num_joints, 3)


def build_model(config: dict) -> TemporalLifterBase:
    """Build a lifter from the ``config`` dict stored in our checkpoints (``{"kind": "gastnet", ...}``)."""
    cfg = dict(config)
    kind = cfg.pop("kind", "gastnet")
    if kind == "gastnet":
        cfg["filter_widths"] = tuple(cfg.get("filter_widths", (3, 3, 3)))
        return GASTNet(**cfg)
    if kind == "baseline":
        return BaselineMLP(**cfg)
    raise ValueError(f"unknown model kind {kind!r} (expected 'gastnet' or 'baseline')")
