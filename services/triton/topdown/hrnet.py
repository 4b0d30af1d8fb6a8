"""HRNet (Sun et al., CVPR 2019) for top-down COCO keypoints, laid out so that its ``state_dict``
loads the official checkpoints (``pose_hrnet_w32_256x192.pth``, ``pose_hrnet_w48_384x288.pth``, ...)
unchanged.

Structure (which fixes the parameter names): a stem of two stride-2 3x3 convolutions (``conv1``,
``bn1``, ``conv2``, ``bn2``), four bottlenecks (``layer1``), then three stages (``stage2``..``stage4``)
of multi-resolution modules, each preceded by a transition (``transition1``..``transition3``) that
adapts the previous stage's branches and opens a new branch at half the resolution. A module runs
four basic blocks per branch (``branches.<b>.<k>``) and then fuses every branch into every other
(``fuse_layers.<to>.<from>``: 1x1 convolution + nearest upsampling from a coarser branch, chains of
stride-2 3x3 convolutions from a finer one). The last module keeps only the finest branch, and a
1x1 convolution (``final_layer``) turns it into one heatmap per joint.

Input: ``[N, 3, H, W]`` RGB normalised with the ImageNet mean and standard deviation; output
``[N, joints, H/4, W/4]`` heatmaps.
"""
from __future__ import annotations

import torch
from torch import nn

from services.triton.topdown.resnet_blocks import BasicBlock, Bottleneck, conv_bn


class MultiResolutionModule(nn.Module):
    """Parallel branches at resolutions 1, 1/2, 1/4, ... of the first, then an exchange between them.
    With ``all_outputs`` False only the finest branch is returned (the network's last module)."""

    def __init__(self, channels: list[int], blocks: int, all_outputs: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c, c) for _ in range(blocks))) for c in channels)
        fuse = []
        for to in range(len(channels) if all_outputs else 1):
            row = []
            for src in range(len(channels)):
                if src > to:     # coarser: match channels, then upsample nearest
                    row.append(nn.Sequential(nn.Conv2d(channels[src], channels[to], 1, 1, 0, bias=False),
                                             nn.BatchNorm2d(channels[to]),
                                             nn.Upsample(scale_factor=2 ** (src - to), mode="nearest")))
                elif src == to:
                    row.append(None)
                else:            # finer: stride-2 steps; the last one changes channels, no ReLU after it
                    steps = []
                    for k in range(to - src):
                        last = k == to - src - 1
                        steps.append(conv_bn(channels[src], channels[to] if last else channels[src], 3, 2,
                                             relu=not last))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for to, row in enumerate(self.fuse_layers):
            total = xs[to]
            for src, layer in enumerate(row):
                if layer is not None:
                    total = total + layer(xs[src])
            out.append(self.relu(total))
        return out


def _transition(before: list[int], after: list[int]) -> nn.ModuleList:
    """Branch adapters between stages: a 3x3 convolution where a branch changes width (None where it
    does not), and for each new branch a chain of stride-2 convolutions from the coarsest old one."""
    layers = []
    for i, c in enumerate(after):
        if i < len(before):
            layers.append(conv_bn(before[i], c, 3, 1) if before[i] != c else None)
        else:
            steps = [conv_bn(before[-1], c if j == i - len(before) else before[-1], 3, 2)
                     for j in range(i + 1 - len(before))]
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class PoseHRNet(nn.Module):
    """HRNet-W``width``: branch widths ``width * (1, 2, 4, 8)``; stages of 1, 4 and 3 modules."""

    STAGE_MODULES = (1, 4, 3)
    BLOCKS_PER_BRANCH = 4

    def __init__(self, width: int = 32, num_joints: int = 17):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=conv_bn(64, 256, 1, 1, relu=False)),
                                    *(Bottleneck(256, 64) for _ in range(3)))
        previous = [256]
        for stage, modules in enumerate(self.STAGE_MODULES, start=2):
            channels = [width * 2 ** b for b in range(stage)]
            setattr(self, f"transition{stage - 1}", _transition(previous, channels))
            last_stage = stage == 1 + len(self.STAGE_MODULES)
            setattr(self, f"stage{stage}", nn.Sequential(*(
                MultiResolutionModule(channels, self.BLOCKS_PER_BRANCH,
                                      all_outputs=not (last_stage and m == modules - 1))
                for m in range(modules))))
            previous = channels
        self.final_layer = nn.Conv2d(width, num_joints, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for stage in range(2, 2 + len(self.STAGE_MODULES)):
            transition = getattr(self, f"transition{stage - 1}")
            # old branches go through their adapter (or as they are); a new one starts from the coarsest
            xs = [(t(xs[i] if i < len(xs) else xs[-1]) if t is not None else xs[i])
                  for i, t in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)
        return self.final_layer(xs[0])
