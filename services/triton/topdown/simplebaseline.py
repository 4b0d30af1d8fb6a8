"""SimpleBaseline (Xiao et al., ECCV 2018): a ResNet backbone and three deconvolutions, laid out so
that its ``state_dict`` loads the official checkpoints (``pose_resnet_50_256x192.pth.tar``, ...)
unchanged.

Names: the torchvision-style ResNet (``conv1``, ``bn1``, ``layer1``..``layer4`` of bottlenecks with
``downsample.0``/``.1``), ``deconv_layers`` (three times [4x4 stride-2 transposed convolution to 256
channels without bias, batch norm, ReLU]: indices 0/1, 3/4, 6/7) and ``final_layer`` (1x1
convolution to one heatmap per joint).

Input: ``[N, 3, H, W]`` RGB normalised with the ImageNet mean and standard deviation; output
``[N, joints, H/4, W/4]`` heatmaps.
"""
from __future__ import annotations

import torch
from torch import nn

from services.triton.topdown.resnet_blocks import Bottleneck, conv_bn

RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
DECONV_CHANNELS = 256


class PoseResNet(nn.Module):
    """SimpleBaseline with a ResNet-``depth`` backbone (50, 101 or 152)."""

    def __init__(self, depth: int = 50, num_joints: int = 17):
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), RESNET_LAYERS[depth]), start=1):
            stride = 1 if i == 1 else 2
            layers = [Bottleneck(cin, planes, stride, downsample=conv_bn(cin, planes * 4, 1, stride, relu=False))]
            cin = planes * 4
            layers += [Bottleneck(cin, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        deconv: list[nn.Module] = []
        for _ in range(3):
            deconv += [nn.ConvTranspose2d(cin, DECONV_CHANNELS, 4, 2, 1, output_padding=0, bias=False),
                       nn.BatchNorm2d(DECONV_CHANNELS), nn.ReLU(inplace=True)]
            cin = DECONV_CHANNELS
        self.deconv_layers = nn.Sequential(*deconv)
        self.final_layer = nn.Conv2d(DECONV_CHANNELS, num_joints, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.final_layer(self.deconv_layers(x))
