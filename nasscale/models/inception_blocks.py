"""PyTorch modules of Inception-v3 (torchvision's ``inception.py``) and Inception-ResNet-v2 (timm's
``inception_resnet_v2.py``), built by walking the layouts of ``nasscale.spec.inception``, as its cost rules do.

Every conv is a BasicConv2d: conv without bias, BatchNorm (the network's ``Norm``; both references use eps 1e-3),
activation. Branches run on the same input and are concatenated in the layout's order; a residual module then
applies a 1x1 conv with bias back to the input width, scales it, adds the input (through drop path) and activates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasscale.models.blocks import DropPath, batch_norm, make_activation
from nasscale.spec.arch import Arch, BlockPlacement
from nasscale.spec.inception import (
    INCEPTION_STEM,
    MAX_DOWN,
    MIXED_LAYOUTS,
    Branch,
    Conv,
    branch_widths,
    concatenated_channels,
)
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation, PoolLayout


def basic_conv(in_channels: int, out_channels: int, kernel: Conv, activation: Activation, norm: Norm) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, (kernel.height, kernel.width), kernel.stride, kernel.padding, bias=False),
        batch_norm(out_channels, norm),
        make_activation(activation),
    )


def make_pool(layout: PoolLayout, count_include_pad: bool) -> nn.Module:
    if layout.average:
        return nn.AvgPool2d(layout.kernel_size, layout.stride, layout.padding, count_include_pad=count_include_pad)
    return nn.MaxPool2d(layout.kernel_size, layout.stride, layout.padding)


class Concatenated(nn.Module):
    """Modules on the same input, their outputs concatenated along the channels."""

    def __init__(self, parts: Sequence[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([part(x) for part in self.parts], dim=1)


def build_branch(branch: Branch, widths: list[list[int]], in_channels: int, activation: Activation,
                 norm: Norm) -> nn.Sequential:
    layers: list[nn.Module] = [make_pool(branch.pool, branch.count_include_pad)] if branch.pool else []
    channels = in_channels
    for convs, layer_widths in zip(branch.layers, widths, strict=True):
        made = [basic_conv(channels, width, kernel, activation, norm)
                for kernel, width in zip(convs, layer_widths, strict=True)]
        layers.append(made[0] if len(made) == 1 else Concatenated(made))
        channels = sum(layer_widths)
    return nn.Sequential(*layers)  # empty: the input passes through (a reduction's pool branch has the pool)


class MixedBlock(nn.Module):
    """An Inception module: its branches concatenated; a residual one (Inception-ResNet) then
    ``activation(x + drop_path(scale * conv1x1(branches)))``."""

    def __init__(self, block: BlockPlacement, drop_path_rate: float):
        super().__init__()
        stage, in_channels = block.stage, block.in_channels
        layout = MIXED_LAYOUTS[stage.block]
        self.branches = Concatenated([
            build_branch(branch, widths, in_channels, stage.activation, block.norm)
            for branch, widths in zip(layout.branches, branch_widths(layout, stage.branches), strict=True)])
        self.residual = layout.residual
        self.projection: nn.Module = nn.Identity()
        self.drop_path: nn.Module = nn.Identity()
        self.activation: nn.Module = nn.Identity()
        self.residual_scale = stage.residual_scale
        if layout.residual:
            self.projection = nn.Conv2d(concatenated_channels(layout, stage.branches, in_channels), in_channels, 1)
            self.drop_path = DropPath(drop_path_rate)
            if stage.output_activation:
                self.activation = make_activation(stage.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches(x)
        if not self.residual:
            return out
        return self.activation(x + self.drop_path(self.projection(out) * self.residual_scale))


def build_mixed_block(block: BlockPlacement, drop_path_rate: float) -> MixedBlock:
    return MixedBlock(block, drop_path_rate)


def build_inception_stem(arch: Arch) -> nn.Sequential:
    """Conv2d_1a_3x3 to maxpool2 (torchvision), conv2d_1a to maxpool_5a (timm), with the stem's activation."""
    layers: list[nn.Module] = []
    channels = arch.in_channels
    for layer in INCEPTION_STEM:
        width = layer.out_channels or arch.stem_channels
        layers += [nn.Conv2d(channels, width, layer.kernel_size, layer.stride, layer.padding, bias=False),
                   batch_norm(width, arch.norm), make_activation(arch.activation)]
        if layer.pool_after:
            layers.append(make_pool(MAX_DOWN, True))
        channels = width
    return nn.Sequential(*layers)
