"""Analytic cost of an architecture from its spec alone: parameters and MACs, exact to the unit.

MACs are multiply-accumulates of convolutions and linear layers at batch 1: the number the
EfficientNet, MnasNet and ConvNeXt papers and torchvision call "FLOPs". Biases, norms, activations,
pooling, additions and multiplications count zero. Self-attention counts its two matrix products,
QK^T and AV, as MACs (2 L^2 C for L tokens of width C, whatever the heads), and its softmax and scaling
zero, as fvcore counts them (``nasscale.spec.attention_cost``). ``torch.utils.flop_counter`` reports twice this.

Each function below mirrors one module of ``nasscale.models.blocks`` layer by layer; the agreement tests build
random architectures and check both against fvcore and torch's FlopCounterMode.

Light core: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nasscale.spec.arch import (
    Arch,
    BlockPlacement,
    StagePlacement,
    final_feature_size,
    iter_blocks,
    iter_stages,
    last_channels,
    placed_stages,
    stage_blocks,
    stem_conv_size,
)
from nasscale.spec.attention_cost import patch_embedding_cost, transformer_block_cost
from nasscale.spec.channels import bottleneck_channels, conv_output_size, expanded_channels, squeeze_channels
from nasscale.spec.cost_primitives import ZERO, conv, conv_norm, linear, new_tuple, norm
from nasscale.spec.cost_primitives import Cost as Cost  # re-exported: callers take Cost with cost()
from nasscale.spec.geometry import dense_transition_channels, has_residual, needs_projection, shuffle_splits
from nasscale.spec.inception import MIXED_BLOCKS
from nasscale.spec.inception_cost import inception_stem_cost, mixed_cost
from nasscale.spec.vocabulary import SE_BOTTLENECK_REDUCTION, STEM_LAYOUTS, BlockType, HeadType, StemNorm, StemType


def squeeze_excite(channels: int, squeezed: int) -> Cost:
    # Two 1x1 convolutions with bias on the pooled 1x1 map.
    return conv(channels, squeezed, 1, 1, bias=True) + conv(squeezed, channels, 1, 1, bias=True)


def _projection(block: BlockPlacement, *, with_norm: bool) -> Cost:
    """ResNet's shortcut: a strided 1x1 conv (with BN after it unless pre-activated) where the shape changes."""
    in_channels, out_channels = block.in_channels, block.out_channels
    if not has_residual(block.stage, in_channels, block.stride) or not needs_projection(
            in_channels, out_channels, block.stride):
        return ZERO
    projection = conv(in_channels, out_channels, 1, block.output_size)
    return projection + norm(out_channels) if with_norm else projection


def _block_squeeze_excite(block: BlockPlacement) -> Cost:
    """The squeeze-excite of an mbconv, fused_mbconv, sepconv or bottleneck block (none at se_ratio 0)."""
    stage = block.stage
    if stage.se_ratio > 0:
        gated = block.se_gated_channels  # derived once: block.squeezed would derive it again
        return squeeze_excite(gated, squeeze_channels(block.in_channels, stage.se_ratio, gated, block.se_style))
    return ZERO


# One function per block type, each mirroring its module in models/blocks.py or models/classic_blocks.py.


def _mbconv_cost(block: BlockPlacement) -> Cost:
    stage, in_channels, output_size = block.stage, block.in_channels, block.output_size
    hidden = expanded_channels(in_channels, stage.expand_ratio)
    expand = conv_norm(in_channels, hidden, 1, block.input_size) if hidden != in_channels else ZERO
    return (expand + conv_norm(hidden, hidden, stage.kernel_size, output_size, groups=hidden)
            + _block_squeeze_excite(block) + conv_norm(hidden, block.out_channels, 1, output_size))


def _fused_mbconv_cost(block: BlockPlacement) -> Cost:
    stage, in_channels, output_size = block.stage, block.in_channels, block.output_size
    hidden = expanded_channels(in_channels, stage.expand_ratio)
    if hidden == in_channels:  # one kxk conv straight to the output width
        return conv_norm(in_channels, block.out_channels, stage.kernel_size, output_size) + _block_squeeze_excite(block)
    return (conv_norm(in_channels, hidden, stage.kernel_size, output_size) + _block_squeeze_excite(block)
            + conv_norm(hidden, block.out_channels, 1, output_size))


def _sepconv_cost(block: BlockPlacement) -> Cost:
    in_channels, output_size = block.in_channels, block.output_size
    return (conv_norm(in_channels, in_channels, block.stage.kernel_size, output_size, groups=in_channels)
            + _block_squeeze_excite(block) + conv_norm(in_channels, block.out_channels, 1, output_size))


def _conv_cost(block: BlockPlacement) -> Cost:
    return conv_norm(block.in_channels, block.out_channels, block.stage.kernel_size, block.output_size)


def _convnext_cost(block: BlockPlacement) -> Cost:
    stage, channels = block.stage, block.out_channels
    hidden = expanded_channels(channels, stage.expand_ratio)
    positions = block.input_size * block.input_size
    return (conv(channels, channels, stage.kernel_size, block.output_size, groups=channels, bias=True)
            + norm(channels) + linear(channels, hidden, positions) + linear(hidden, channels, positions)
            + new_tuple(Cost, (channels, 0)))  # layer scale


def _basic_cost(block: BlockPlacement) -> Cost:
    out_channels, kernel, output_size = block.out_channels, block.stage.kernel_size, block.output_size
    return (conv_norm(block.in_channels, out_channels, kernel, output_size)
            + conv_norm(out_channels, out_channels, kernel, output_size) + _projection(block, with_norm=True))


def _bottleneck_cost(block: BlockPlacement) -> Cost:
    """Bottleneck and SE-bottleneck: 1x1 reduce, grouped kxk, SE (RegNetY), 1x1 expand, SE (SE-ResNet)."""
    stage, out_channels, output_size = block.stage, block.out_channels, block.output_size
    hidden = bottleneck_channels(out_channels, stage.bottleneck_ratio)
    total = (conv_norm(block.in_channels, hidden, 1, block.input_size)
             + conv_norm(hidden, hidden, stage.kernel_size, output_size, groups=stage.groups)
             + _block_squeeze_excite(block) + conv_norm(hidden, out_channels, 1, output_size)
             + _projection(block, with_norm=True))
    if stage.block is BlockType.SE_BOTTLENECK:
        total += squeeze_excite(out_channels, se_bottleneck_squeeze(out_channels))
    return total


def _preact_basic_cost(block: BlockPlacement) -> Cost:
    in_channels, out_channels = block.in_channels, block.out_channels
    kernel, output_size = block.stage.kernel_size, block.output_size
    return (norm(in_channels) + conv(in_channels, out_channels, kernel, output_size)
            + norm(out_channels) + conv(out_channels, out_channels, kernel, output_size)
            + _projection(block, with_norm=False))


def _preact_bottleneck_cost(block: BlockPlacement) -> Cost:
    stage, in_channels, out_channels = block.stage, block.in_channels, block.out_channels
    hidden, output_size = bottleneck_channels(out_channels, stage.bottleneck_ratio), block.output_size
    return (norm(in_channels) + conv(in_channels, hidden, 1, block.input_size)
            + norm(hidden) + conv(hidden, hidden, stage.kernel_size, output_size, groups=stage.groups)
            + norm(hidden) + conv(hidden, out_channels, 1, output_size)
            + _projection(block, with_norm=False))


def se_bottleneck_squeeze(out_channels: int) -> int:
    return max(1, out_channels // SE_BOTTLENECK_REDUCTION)


def _depthwise_separable_cost(block: BlockPlacement) -> Cost:
    in_channels, output_size = block.in_channels, block.output_size
    return (conv_norm(in_channels, in_channels, block.stage.kernel_size, output_size, groups=in_channels)
            + conv_norm(in_channels, block.out_channels, 1, output_size))


def _shuffle_cost(block: BlockPlacement) -> Cost:
    in_channels, kernel, half = block.in_channels, block.stage.kernel_size, block.out_channels // 2
    size, output_size = block.input_size, block.output_size
    if shuffle_splits(in_channels, block.out_channels, block.stride):  # half passes through, half is transformed
        return (conv_norm(half, half, 1, size) + conv_norm(half, half, kernel, size, groups=half)
                + conv_norm(half, half, 1, size))
    shortcut_branch = (conv_norm(in_channels, in_channels, kernel, output_size, groups=in_channels)
                       + conv_norm(in_channels, half, 1, output_size))
    main_branch = (conv_norm(in_channels, half, 1, size) + conv_norm(half, half, kernel, output_size, groups=half)
                   + conv_norm(half, half, 1, output_size))
    return shortcut_branch + main_branch


def _dense_cost(block: BlockPlacement) -> Cost:
    in_channels, size = block.in_channels, block.input_size
    growth = block.out_channels - in_channels
    hidden = expanded_channels(growth, block.stage.expand_ratio)
    return (norm(in_channels) + conv(in_channels, hidden, 1, size)
            + norm(hidden) + conv(hidden, growth, block.stage.kernel_size, size))


def _inception_cost(block: BlockPlacement) -> Cost:
    stage, in_channels, size = block.stage, block.in_channels, block.input_size
    one, three_reduce, three, second_reduce, second, projection = stage.branches
    return (conv_norm(in_channels, one, 1, size)
            + conv_norm(in_channels, three_reduce, 1, size) + conv_norm(three_reduce, three, 3, size)
            + conv_norm(in_channels, second_reduce, 1, size) + conv_norm(second_reduce, second, stage.kernel_size, size)
            + conv_norm(in_channels, projection, 1, size))


def _fire_cost(block: BlockPlacement) -> Cost:
    stage, in_channels, out_channels, size = block.stage, block.in_channels, block.out_channels, block.input_size
    squeeze = bottleneck_channels(out_channels, stage.bottleneck_ratio)
    one = out_channels // 2
    return (conv(in_channels, squeeze, 1, size, bias=True) + conv(squeeze, one, 1, size, bias=True)
            + conv(squeeze, out_channels - one, stage.kernel_size, size, bias=True))


def _plain_cost(block: BlockPlacement) -> Cost:
    return conv(block.in_channels, block.out_channels, block.stage.kernel_size, block.output_size, bias=True)


def _van_cost(block: BlockPlacement) -> Cost:
    channels, size = block.out_channels, block.input_size
    hidden = expanded_channels(channels, block.stage.expand_ratio)
    attention = (norm(channels) + conv(channels, channels, 1, size, bias=True)
                 + conv(channels, channels, 5, size, groups=channels, bias=True)
                 + conv(channels, channels, 7, size, groups=channels, bias=True)  # dilation 3
                 + conv(channels, channels, 1, size, bias=True) + conv(channels, channels, 1, size, bias=True))
    mlp = (norm(channels) + conv(channels, hidden, 1, size, bias=True)
           + conv(hidden, hidden, 3, size, groups=hidden, bias=True) + conv(hidden, channels, 1, size, bias=True))
    return attention + mlp + new_tuple(Cost, (2 * channels, 0))  # two layer scales


# Which cost rule serves each block type: one explicit table, one lookup per block.
BLOCK_COSTS = {
    BlockType.MBCONV: _mbconv_cost,
    BlockType.FUSED_MBCONV: _fused_mbconv_cost,
    BlockType.SEPCONV: _sepconv_cost,
    BlockType.CONV: _conv_cost,
    BlockType.CONVNEXT: _convnext_cost,
    BlockType.BASIC: _basic_cost,
    BlockType.BOTTLENECK: _bottleneck_cost,
    BlockType.SE_BOTTLENECK: _bottleneck_cost,
    BlockType.PREACT_BASIC: _preact_basic_cost,
    BlockType.PREACT_BOTTLENECK: _preact_bottleneck_cost,
    BlockType.DEPTHWISE_SEPARABLE: _depthwise_separable_cost,
    BlockType.SHUFFLE: _shuffle_cost,
    BlockType.DENSE: _dense_cost,
    BlockType.INCEPTION: _inception_cost,
    BlockType.FIRE: _fire_cost,
    BlockType.PLAIN: _plain_cost,
    BlockType.VAN: _van_cost,
    BlockType.TRANSFORMER: transformer_block_cost,
    **dict.fromkeys(MIXED_BLOCKS, mixed_cost),
}


def block_cost(block: BlockPlacement) -> Cost:
    return BLOCK_COSTS[block.stage.block](block)


def convnext_transition_cost(in_channels: int, out_channels: int, stride: int, input_size: int) -> Cost:
    output_size = conv_output_size(input_size, stride, stride, 0)
    return norm(in_channels) + conv(in_channels, out_channels, stride, output_size, bias=True)


def opening_cost(placement: StagePlacement) -> Cost:
    """The layer a stage opens with (pools cost nothing)."""
    if not placement.has_transition:
        return ZERO
    stage, in_channels, size = placement.stage, placement.in_channels, placement.input_size
    match stage.block:
        case BlockType.CONVNEXT:
            return convnext_transition_cost(in_channels, stage.out_channels, stage.stride, size)
        case BlockType.VAN:
            output_size = conv_output_size(size, 3, stage.stride, 1)
            return conv(in_channels, stage.out_channels, 3, output_size, bias=True) + norm(stage.out_channels)
        case BlockType.DENSE:
            return norm(in_channels) + conv(in_channels, dense_transition_channels(in_channels), 1, size)
        case BlockType.TRANSFORMER:
            return patch_embedding_cost(placement)
    return ZERO


def closing_cost(placement: StagePlacement) -> Cost:
    """VAN stages end with a LayerNorm; plain stages' closing pool costs nothing."""
    return norm(placement.stage.out_channels) if placement.stage.block is BlockType.VAN else ZERO


def stem_cost(arch: Arch) -> Cost:
    layout = STEM_LAYOUTS.get(arch.stem)
    if layout is None:  # no stem, or Inception's layers
        return inception_stem_cost(arch) if arch.stem is StemType.INCEPTION else ZERO
    cost = conv(arch.in_channels, arch.stem_channels, layout.kernel_size, stem_conv_size(arch), bias=layout.bias)
    return cost if layout.norm is StemNorm.NONE else cost + norm(arch.stem_channels)


def classifier_cost(features: int, hidden: tuple[int, ...], num_classes: int) -> Cost:
    total = ZERO
    for width in hidden:
        total += linear(features, width)
        features = width
    return total + linear(features, num_classes)


def head_part_cost(head: HeadType, features: int, size: int, num_classes: int, *, head_channels: int = 0,
                   classifier_hidden: tuple[int, ...] = (), head_pool_size: int = 1) -> Cost:
    """The head fed ``features`` channels at ``size`` x ``size`` (what cost_range needs without an Arch)."""
    match head:
        case HeadType.CONV:
            return conv_norm(features, head_channels, 1, size) + classifier_cost(head_channels, classifier_hidden,
                                                                                 num_classes)
        case HeadType.NORM | HeadType.PREACT | HeadType.CLASS_TOKEN:
            return norm(features) + classifier_cost(features, classifier_hidden, num_classes)
        case HeadType.POOL:
            return classifier_cost(features * head_pool_size * head_pool_size, classifier_hidden, num_classes)
        case HeadType.CONV_CLASSIFIER:
            return conv(features, num_classes, 1, size, bias=True)
    raise ValueError(f"no cost rule for head {head!r}")


def head_cost(arch: Arch) -> Cost:
    return _head_cost_at(arch, final_feature_size(arch))


def _head_cost_at(arch: Arch, final_size: int) -> Cost:
    return head_part_cost(arch.head, last_channels(arch), final_size, arch.num_classes,
                          head_channels=arch.head_channels, classifier_hidden=arch.classifier_hidden,
                          head_pool_size=arch.head_pool_size)


@dataclass(frozen=True, slots=True)
class PartCost:
    name: str  # "stem", "stages[3]", "head"
    params: int
    macs: int


def stage_cost(placement: StagePlacement) -> Cost:
    total = opening_cost(placement) + closing_cost(placement)
    blocks = stage_blocks(placement)
    stage = placement.stage
    if stage.block is BlockType.DENSE or not stage.same_padding:
        return sum((block_cost(block) for block in blocks), total)  # every layer has its own shape
    # Blocks after the first repeat the same shapes, so one of them stands for all.
    total += block_cost(next(blocks))
    repeated = next(blocks, None)
    if repeated is not None:
        total += block_cost(repeated) * (stage.num_blocks - 1)
    return total


def cost_breakdown(arch: Arch) -> list[PartCost]:
    """Cost per part: the stem, each stage (its opening and closing layers included) and the head."""
    parts = [("stem", stem_cost(arch))]
    parts += [(f"stages[{placement.index}]", stage_cost(placement)) for placement in iter_stages(arch)]
    parts.append(("head", head_cost(arch)))
    return [PartCost(name, part.params, part.macs) for name, part in parts]


def cost(arch: Arch) -> Cost:
    """Exact parameters and MACs (batch 1) of ``build(arch)``, without building it."""
    total = stem_cost(arch)
    for placement, output_size in placed_stages(arch):
        total += stage_cost(placement)
        head_input_size = output_size  # the last stage's; head_cost(arch) would walk the stages again for it
    return total + _head_cost_at(arch, head_input_size)


def residual_blocks(arch: Arch) -> int:
    """How many blocks add their input back (useful in summaries and tests)."""
    return sum(1 for block in iter_blocks(arch) if has_residual(block.stage, block.in_channels, block.stride))


def cost_report(arch: Arch) -> dict[str, Any]:
    """Cost as plain data for the CLI and scripts (``nasscale.models.counts.count_agreement`` adds the oracles)."""
    total = cost(arch)
    return {
        "arch_id": arch.arch_id,
        "params": total.params,
        "macs": total.macs,
        "resolution": arch.resolution,
        "parts": [{"name": part.name, "params": part.params, "macs": part.macs} for part in cost_breakdown(arch)],
    }
