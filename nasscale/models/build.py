"""build(arch) -> nn.Module: the one place where a spec becomes a PyTorch model."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal, overload

import torch
from torch import nn

from nasscale.models import classic_blocks as classic
from nasscale.models.attention_blocks import ClassTokenPool, build_patch_embedding, build_transformer_block
from nasscale.models.blocks import (
    ConvNeXtBlock,
    ConvNormAct,
    ResidualBlock,
    batch_norm,
    convnext_transition,
    fused_mbconv_body,
    layer_norm,
    layer_norm_2d,
    make_activation,
    make_squeeze_excite,
    mbconv_body,
    sepconv_body,
)
from nasscale.models.features import FeatureNetwork
from nasscale.models.inception_blocks import build_inception_stem, build_mixed_block
from nasscale.spec.arch import (
    Arch,
    BlockPlacement,
    StagePlacement,
    iter_stages,
    last_channels,
    stage_blocks,
    total_blocks,
)
from nasscale.spec.channels import bottleneck_channels, expanded_channels
from nasscale.spec.geometry import block_padding, dense_transition_channels, has_residual
from nasscale.spec.inception import MIXED_BLOCKS
from nasscale.spec.vocabulary import (
    DENSE_TRANSITION_POOL,
    POOL_LAYOUTS,
    SE_BOTTLENECK_REDUCTION,
    STEM_LAYOUTS,
    BlockType,
    HeadType,
    StemNorm,
    StemType,
)


def _squeezed(block: BlockPlacement) -> int | None:
    return block.squeezed if block.stage.se_ratio > 0 else None


def _mbconv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return mbconv_body(block.in_channels, stage.out_channels, kernel_size=stage.kernel_size, stride=block.stride,
                       hidden=expanded_channels(block.in_channels, stage.expand_ratio),
                       squeezed=_squeezed(block), activation=stage.activation, norm=block.norm, se_style=block.se_style)


def _fused_mbconv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return fused_mbconv_body(block.in_channels, stage.out_channels, kernel_size=stage.kernel_size,
                             stride=block.stride, hidden=expanded_channels(block.in_channels, stage.expand_ratio),
                             squeezed=_squeezed(block), activation=stage.activation, norm=block.norm,
                             se_style=block.se_style)


def _sepconv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return sepconv_body(block.in_channels, stage.out_channels, kernel_size=stage.kernel_size, stride=block.stride,
                        squeezed=_squeezed(block), activation=stage.activation, norm=block.norm,
                        se_style=block.se_style)


def _conv(block: BlockPlacement) -> nn.Module:
    stage = block.stage
    return ConvNormAct(block.in_channels, stage.out_channels, stage.kernel_size, stride=block.stride,
                       activation=stage.activation, norm=block.norm)


# One explicit table from block type to the function that builds a block's body (the residual
# wrapper is shared). The other families build whole blocks (BLOCK_BUILDERS below).
BLOCK_BODIES: dict[BlockType, Callable[[BlockPlacement], nn.Module]] = {
    BlockType.MBCONV: _mbconv,
    BlockType.FUSED_MBCONV: _fused_mbconv,
    BlockType.SEPCONV: _sepconv,
    BlockType.CONV: _conv,
}


def _convnext(block: BlockPlacement, drop_path_rate: float) -> nn.Module:
    stage = block.stage
    return ConvNeXtBlock(stage.out_channels, kernel_size=stage.kernel_size,
                         hidden=expanded_channels(stage.out_channels, stage.expand_ratio),
                         activation=stage.activation, use_residual=has_residual(stage, block.in_channels, block.stride),
                         drop_path_rate=drop_path_rate, norm=block.norm)


def _resnet(block: BlockPlacement, drop_path_rate: float) -> nn.Module:
    stage, in_channels, out_channels = block.stage, block.in_channels, block.out_channels
    kernel, stride, activation, norm = stage.kernel_size, block.stride, stage.activation, block.norm
    hidden = bottleneck_channels(out_channels, stage.bottleneck_ratio)
    match stage.block:
        case BlockType.BASIC:
            body = classic.basic_body(in_channels, out_channels, kernel_size=kernel, stride=stride,
                                      activation=activation, norm=norm)
        case BlockType.PREACT_BASIC:
            body = classic.preact_basic_convs(in_channels, out_channels, kernel_size=kernel, stride=stride,
                                              activation=activation, norm=norm)
        case BlockType.PREACT_BOTTLENECK:
            body = classic.preact_bottleneck_convs(in_channels, out_channels, kernel_size=kernel, stride=stride,
                                                   hidden=hidden, groups=stage.groups, activation=activation,
                                                   norm=norm)
        case _:
            output_excite = None
            if stage.block is BlockType.SE_BOTTLENECK:
                output_excite = classic.se_resnet_excite(out_channels,
                                                         max(1, out_channels // SE_BOTTLENECK_REDUCTION))
            body = classic.bottleneck_body(
                in_channels, out_channels, kernel_size=kernel, stride=stride, hidden=hidden, groups=stage.groups,
                activation=activation, output_squeeze_excite=output_excite, norm=norm,
                squeeze_excite=make_squeeze_excite(hidden, _squeezed(block), activation, block.se_style))
    preact = stage.block in (BlockType.PREACT_BASIC, BlockType.PREACT_BOTTLENECK)
    wrapper = classic.PreActBlock if preact else classic.ResNetBlock
    return wrapper(in_channels, out_channels, body, stride=stride, activation=activation,
                   use_residual=has_residual(stage, in_channels, stride), drop_path_rate=drop_path_rate, norm=norm)


def _other(block: BlockPlacement, drop_path_rate: float) -> nn.Module:
    stage, in_channels, out_channels = block.stage, block.in_channels, block.out_channels
    kernel, activation, norm = stage.kernel_size, stage.activation, block.norm
    match stage.block:
        case BlockType.DEPTHWISE_SEPARABLE:
            return classic.depthwise_separable(in_channels, out_channels, kernel_size=kernel, stride=block.stride,
                                               activation=activation, norm=norm)
        case BlockType.SHUFFLE:
            return classic.ShuffleUnit(in_channels, out_channels, kernel_size=kernel, stride=block.stride,
                                       activation=activation, norm=norm)
        case BlockType.DENSE:
            growth = out_channels - in_channels
            return classic.DenseLayer(in_channels, growth, expanded_channels(growth, stage.expand_ratio),
                                      kernel_size=kernel, activation=activation, norm=norm)
        case BlockType.INCEPTION:
            return classic.Inception(in_channels, stage.branches, kernel_size=kernel, activation=activation,
                                     norm=norm)
        case BlockType.FIRE:
            return classic.Fire(in_channels, out_channels, bottleneck_channels(out_channels, stage.bottleneck_ratio),
                                kernel_size=kernel, activation=activation)
        case BlockType.PLAIN:
            return classic.plain_conv(in_channels, out_channels, kernel_size=kernel, padding=block_padding(stage),
                                      activation=activation)
        case BlockType.VAN:
            return classic.VANBlock(out_channels, expanded_channels(out_channels, stage.expand_ratio),
                                    activation=activation, drop_path_rate=drop_path_rate, norm=norm)
    raise ValueError(f"no builder for block type {stage.block!r}")


BLOCK_BUILDERS: dict[BlockType, Callable[[BlockPlacement, float], nn.Module]] = {
    BlockType.CONVNEXT: _convnext,
    **dict.fromkeys((BlockType.BASIC, BlockType.BOTTLENECK, BlockType.SE_BOTTLENECK, BlockType.PREACT_BASIC,
                     BlockType.PREACT_BOTTLENECK), _resnet),
    **dict.fromkeys((BlockType.DEPTHWISE_SEPARABLE, BlockType.SHUFFLE, BlockType.DENSE, BlockType.INCEPTION,
                     BlockType.FIRE, BlockType.PLAIN, BlockType.VAN), _other),
    BlockType.TRANSFORMER: build_transformer_block,
    **dict.fromkeys(MIXED_BLOCKS, build_mixed_block),
}


def build_block(block: BlockPlacement, drop_path_rate: float) -> nn.Module:
    stage = block.stage
    if stage.block in BLOCK_BUILDERS:
        return BLOCK_BUILDERS[stage.block](block, drop_path_rate)
    use_residual = has_residual(stage, block.in_channels, block.stride)
    return ResidualBlock(BLOCK_BODIES[stage.block](block), use_residual=use_residual, drop_path_rate=drop_path_rate)


def build_transition(placement: StagePlacement) -> nn.Module:
    """The layer a stage opens with (``placement.has_transition``)."""
    stage, in_channels, norm = placement.stage, placement.in_channels, placement.norm
    match stage.block:
        case BlockType.CONVNEXT:
            return convnext_transition(in_channels, stage.out_channels, stage.stride, norm)
        case BlockType.VAN:
            return classic.van_transition(in_channels, stage.out_channels, stage.stride, norm)
        case BlockType.DENSE:
            return classic.dense_transition(in_channels, dense_transition_channels(in_channels), stage.activation,
                                            DENSE_TRANSITION_POOL, norm)
        case BlockType.TRANSFORMER:
            return build_patch_embedding(placement)
    return classic.make_pool(POOL_LAYOUTS[stage.pool])


def build_closing(placement: StagePlacement) -> nn.Module | None:
    """The layer a stage ends with: a plain stage's pool, a VAN stage's LayerNorm."""
    if placement.has_closing_pool:
        return classic.make_pool(POOL_LAYOUTS[placement.stage.pool])
    if placement.stage.block is BlockType.VAN:
        return classic.van_closing_norm(placement.stage.out_channels, placement.norm)
    return None


def build_stem(arch: Arch) -> nn.Module:
    if arch.stem is StemType.NONE:
        return nn.Identity()
    if arch.stem is StemType.INCEPTION:
        return build_inception_stem(arch)
    layout = STEM_LAYOUTS[arch.stem]
    layers: list[nn.Module] = [nn.Conv2d(arch.in_channels, arch.stem_channels, layout.kernel_size, layout.stride,
                                         layout.padding, bias=layout.bias)]
    if layout.norm is StemNorm.BATCH:
        layers.append(batch_norm(arch.stem_channels, arch.norm))
    elif layout.norm is StemNorm.LAYER:
        layers.append(layer_norm_2d(arch.stem_channels, arch.norm))
    if layout.activation:
        layers.append(make_activation(arch.activation))
    if layout.pool is not None:
        layers.append(classic.make_pool(layout.pool))
    return nn.Sequential(*layers)


def _hidden_layers(arch: Arch, features: int) -> nn.Module:
    """classifier_hidden's linear layers, each followed by the activation and dropout."""
    layers: list[nn.Module] = []
    for width in arch.classifier_hidden:
        layers += [nn.Linear(features, width), make_activation(arch.activation), nn.Dropout(arch.dropout)]
        features = width
    return nn.Sequential(*layers) if layers else nn.Identity()


class Head(nn.Module):
    """What turns the last feature map into logits (see HeadType): an optional layer on the map, an adaptive
    average pool, an optional LayerNorm (norm head), hidden linear layers, dropout, the classifier."""

    def __init__(self, arch: Arch):
        super().__init__()
        features = last_channels(arch)
        self.conv: nn.Module = nn.Identity()
        self.norm: nn.Module = nn.Identity()
        match arch.head:
            case HeadType.CONV:
                self.conv = ConvNormAct(features, arch.head_channels, 1, activation=arch.activation, norm=arch.norm)
                features = arch.head_channels
            case HeadType.PREACT:
                self.conv = classic.norm_activation(features, arch.activation, arch.norm)
            case HeadType.CONV_CLASSIFIER:
                self.conv = nn.Sequential(nn.Dropout(arch.dropout), nn.Conv2d(features, arch.num_classes, 1),
                                          make_activation(arch.activation))
            case HeadType.NORM | HeadType.CLASS_TOKEN:
                self.norm = layer_norm(features, arch.norm)
        # The class_token head's "pool" takes the class token from the last stage's tokens.
        self.pool = ClassTokenPool() if arch.head is HeadType.CLASS_TOKEN else nn.AdaptiveAvgPool2d(arch.head_pool_size)
        features *= arch.head_pool_size ** 2
        self.hidden = _hidden_layers(arch, features)
        features = arch.classifier_hidden[-1] if arch.classifier_hidden else features
        # The dropout before the classifier: hidden layers end with their own (VGG, MobileNetV3) and SqueezeNet's
        # conv classifier drops before it.
        own_dropout = bool(arch.classifier_hidden) or arch.head is HeadType.CONV_CLASSIFIER
        self.dropout = nn.Identity() if own_dropout else nn.Dropout(arch.dropout)
        self.classifier = nn.Identity() if arch.head is HeadType.CONV_CLASSIFIER else \
            nn.Linear(features, arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.pool(self.conv(x)), 1)
        return self.classifier(self.dropout(self.hidden(self.norm(x))))


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
                layers.append(build_transition(placement))
            for block in stage_blocks(placement):
                # Stochastic depth grows linearly with depth, as in EfficientNet and ConvNeXt.
                rate = arch.drop_path_rate * block.block_index / blocks_total
                layers.append(build_block(block, rate))
            closing = build_closing(placement)
            if closing is not None:
                layers.append(closing)
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head: nn.Module = Head(arch)  # any module: empty_network swaps in an identity
        initialize_weights(self)
        if arch.norm.zero_init_last_bn:
            zero_init_last_norms(self)

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


def zero_init_last_norms(model: nn.Module) -> None:
    """Zero the weight of the last BatchNorm of each residual branch, so that every residual block starts as its
    shortcut (torchvision's zero_init_residual, timm's zero_init_last: bn2 of a basic block, bn3 of a bottleneck).
    A block without a residual keeps its norms: zeroing one would cut the signal."""
    for module in model.modules():
        if isinstance(module, ResidualBlock | classic.ResNetBlock) and module.use_residual:
            norms = [layer for layer in module.body.modules() if isinstance(layer, nn.BatchNorm2d)]
            if norms:  # modules() lists a Sequential's layers in forward order
                nn.init.zeros_(norms[-1].weight)


@overload
def build(arch: Arch, *, features_only: Literal[False] = False) -> Network: ...


@overload
def build(arch: Arch, *, features_only: Literal[True], out_indices: Sequence[int] | None = None) -> FeatureNetwork: ...


def build(arch: Arch, *, features_only: bool = False, out_indices: Sequence[int] | None = None) \
        -> Network | FeatureNetwork:
    """The PyTorch model of ``arch``: input (N, in_channels, R, R), output (N, num_classes) logits. With
    ``features_only``, a backbone: the feature maps at the end of the stages in ``out_indices`` (default: the last
    stage at each stride), described by its ``feature_info`` (``nasscale.models.features``)."""
    network = Network(arch)
    return FeatureNetwork(network, out_indices) if features_only else network
