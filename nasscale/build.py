"""build(arch) -> nn.Module: the one place where a spec becomes a PyTorch model."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from nasscale.arch import (
    PATCHIFY_SIZE,
    Arch,
    BlockPlacement,
    BlockType,
    HeadType,
    StemType,
    expanded_channels,
    has_residual,
    iter_stages,
    last_channels,
    squeeze_channels,
    stage_blocks,
    total_blocks,
)
from nasscale.blocks import (
    CONVNEXT_NORM_EPS,
    ConvNeXtBlock,
    ConvNormAct,
    LayerNorm2d,
    ResidualBlock,
    convnext_transition,
    fused_mbconv_body,
    mbconv_body,
    sepconv_body,
)


def _squeezed(block: BlockPlacement) -> int | None:
    return squeeze_channels(block.in_channels, block.stage.se_ratio) if block.stage.se_ratio > 0 else None


def _mbconv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return mbconv_body(block.in_channels, stage.out_channels, kernel_size=stage.kernel_size, stride=block.stride,
                       hidden=expanded_channels(block.in_channels, stage.expand_ratio),
                       squeezed=_squeezed(block), activation=stage.activation)


def _fused_mbconv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return fused_mbconv_body(block.in_channels, stage.out_channels, kernel_size=stage.kernel_size,
                             stride=block.stride, hidden=expanded_channels(block.in_channels, stage.expand_ratio),
                             squeezed=_squeezed(block), activation=stage.activation)


def _sepconv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return sepconv_body(block.in_channels, stage.out_channels, kernel_size=stage.kernel_size, stride=block.stride,
                        squeezed=_squeezed(block), activation=stage.activation)


def _conv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return ConvNormAct(block.in_channels, stage.out_channels, stage.kernel_size, stride=block.stride,
                       activation=stage.activation)


# One explicit table from block type to the function that builds a block's body (the residual
# wrapper is shared). ConvNeXt blocks carry their own residual and are built separately.
BLOCK_BODIES: dict[BlockType, Callable[[BlockPlacement], nn.Module]] = {
    BlockType.MBCONV: _mbconv,
    BlockType.FUSED_MBCONV: _fused_mbconv,
    BlockType.SEPCONV: _sepconv,
    BlockType.CONV: _conv,
}


def build_block(block: BlockPlacement, drop_path_rate: float) -> nn.Module:
    stage = block.stage
    use_residual = has_residual(stage, block.in_channels, block.stride)
    if stage.block is BlockType.CONVNEXT:
        return ConvNeXtBlock(stage.out_channels, kernel_size=stage.kernel_size,
                             hidden=expanded_channels(stage.out_channels, stage.expand_ratio),
                             activation=stage.activation, use_residual=use_residual,
                             drop_path_rate=drop_path_rate)
    return ResidualBlock(BLOCK_BODIES[stage.block](block), use_residual=use_residual, drop_path_rate=drop_path_rate)


def build_stem(arch: Arch) -> nn.Module:
    if arch.stem is StemType.PATCHIFY:
        return nn.Sequential(
            nn.Conv2d(arch.in_channels, arch.stem_channels, PATCHIFY_SIZE, PATCHIFY_SIZE),
            LayerNorm2d(arch.stem_channels, eps=CONVNEXT_NORM_EPS),
        )
    return ConvNormAct(arch.in_channels, arch.stem_channels, 3, stride=2, activation=arch.activation)


class Head(nn.Module):
    """Optional 1x1 conv head (conv head) or LayerNorm (norm head), global pool, dropout, classifier."""

    def __init__(self, arch: Arch):
        super().__init__()
        features = last_channels(arch)
        if arch.head is HeadType.CONV:
            self.conv = ConvNormAct(features, arch.head_channels, 1, activation=arch.activation)
            features = arch.head_channels
        else:
            self.conv = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.norm = nn.LayerNorm(features, eps=CONVNEXT_NORM_EPS) if arch.head is HeadType.NORM else nn.Identity()
        self.dropout = nn.Dropout(arch.dropout)
        self.classifier = nn.Linear(features, arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return self.classifier(self.dropout(self.norm(x)))


class Network(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.stem = build_stem(arch)
        blocks_total = total_blocks(arch)
        stages = []
        for placement in iter_stages(arch):
            layers: list[nn.Module] = []
            if placement.has_transition:
                layers.append(convnext_transition(placement.in_channels, placement.stage.out_channels,
                                                  placement.stage.stride))
            for block in stage_blocks(placement):
                # Stochastic depth grows linearly with depth, as in EfficientNet and ConvNeXt.
                rate = arch.drop_path_rate * block.block_index / blocks_total
                layers.append(build_block(block, rate))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = Head(arch)
        initialize_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def initialize_weights(model: nn.Module) -> None:
    """torchvision's EfficientNet/ConvNeXt initialisation: He-normal (fan-out) convs, unit norms,
    uniform(+-1/sqrt(out)) classifier; ConvNeXt-style truncated normal for linear layers in blocks."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init_range = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -init_range, init_range)
            nn.init.zeros_(module.bias)


def build(arch: Arch) -> Network:
    """The PyTorch model of ``arch``: input (N, in_channels, R, R), output (N, num_classes) logits."""
    return Network(arch)
