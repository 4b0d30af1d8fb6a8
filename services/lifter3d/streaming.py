"""A causal GAST-Net run one frame at a time, reusing what earlier frames computed.

Run on a window of ``R`` frames, a causal :class:`~services.lifter3d.model.GASTNet` computes every
layer over the whole window and keeps one output frame; most of that work was already done for the
previous frame. :class:`CausalStream` keeps, for each layer, the per-frame features it will still
need (the last ``(width - 1) * dilation + 1`` frames) and computes only the new frame's column:
the same modules, the same weights, the same numbers as ``model(window)[:, -1]`` (a unit test holds
them equal), for about a twentieth of the work at 27 frames.

Why it is exact: in a causal model every block's residual is the last frames of its input, the graph
blocks and batch norms (eval mode) work on each frame alone, and a temporal convolution's output
for frame t reads only frames t, t - d, ..., t - (w - 1) d of its input.

A stream starts as the batch lift starts a sequence: as if its first frame had been seen for the
whole receptive field before it (the window padded with its first frame).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import GASTNet


def _temporal_conv(conv: torch.nn.Conv2d, window: torch.Tensor) -> torch.Tensor:
    """``conv`` (kernel ``(w, 1)``, dilation ``d``, no bias) applied to ``window [B, C, (w - 1) d + 1, J]``
    for its one output frame ``[B, C', 1, J]``, written as a product over the ``w`` frames it reads:
    the same sum as the convolution, without the convolution kernels' set-up and threads for one column."""
    step = conv.dilation[0]
    taps = window[:, :, ::step]                                      # [B, C, w, J]
    return torch.einsum("oik,bikj->boj", conv.weight[..., 0], taps)[:, :, None]


class CausalStream:
    """Per-frame outputs of a causal ``GASTNet`` for a batch of ``B`` parallel streams (e.g. a
    person and their mirror image); ``push(x [B, 17, 2]) -> [B, 17, 3]`` for each new frame."""

    def __init__(self, model: GASTNet):
        if not isinstance(model, GASTNet) or not model.causal:
            raise ValueError("CausalStream needs a causal GASTNet")
        if model.training:
            raise ValueError("CausalStream needs the model in eval mode")
        self.model = model
        widths = model.filter_widths
        dilations = [1]
        for w in widths[:-1]:
            dilations.append(dilations[-1] * w)
        # frames of each level's features a new column reads: level 0 = the normalised input (read by
        # the first convolution), level i = the output of graph block i - 1 (read by conv i)
        self.spans = [(w - 1) * d + 1 for w, d in zip(widths, dilations)]
        self.levels: list[torch.Tensor] | None = None   # each [B, C, span, J]
        self.frames = 0

    def _column(self, level: int, window: torch.Tensor) -> torch.Tensor:
        """The features of level ``level + 1`` for the newest frame, from ``window`` = the last
        ``spans[level]`` frames of level ``level`` -> ``[B, C', 1, J]``."""
        m = self.model
        if level == 0:
            x = F.relu(m.expand_bn(_temporal_conv(m.expand_conv, window)))
            return m.layers_graph_conv[0](x)
        i = level - 1
        residual = window[:, :, -1:]
        x = F.relu(m.layers_bn[2 * i](_temporal_conv(m.layers_conv[2 * i], window)))
        x = residual + F.relu(m.layers_bn[2 * i + 1](_temporal_conv(m.layers_conv[2 * i + 1], x)))
        return m.layers_graph_conv[i + 1](x)

    @torch.no_grad()
    def push(self, frame: torch.Tensor) -> torch.Tensor:
        """``frame [B, 17, 2]`` (normalised screen coordinates, Human3.6M-17) -> ``[B, 17, 3]``, the
        pose of this frame (camera frame, root not subtracted), as ``model(window)[:, -1]``."""
        if frame.dim() != 3 or frame.shape[1:] != (self.model.num_joints_in, self.model.in_features):
            raise ValueError(f"expected a frame [B, {self.model.num_joints_in}, {self.model.in_features}], "
                             f"got {list(frame.shape)}")
        x = self.model.init_bn(frame.float().permute(0, 2, 1)[:, :, None, :])   # [B, 2, 1, J]
        first = self.levels is None
        if first:
            self.levels = []
        for level, span in enumerate(self.spans):
            if first:   # a stream starts as if its first frame had always been there
                self.levels.append(x.expand(-1, -1, span, -1).contiguous())
            else:
                self.levels[level] = torch.cat([self.levels[level][:, :, 1:], x], dim=2)
            x = self._column(level, self.levels[level])
        self.frames += 1
        return self.model.shrink(x)[:, :, 0].permute(0, 2, 1)
