"""The rules of one stage, shared by the builder (``nasscale.models.build``) and the cost model
(``nasscale.spec.cost``): residual and projection rules, opening layers, padding and the sizes a stage
produces. Where each stage and block sits in a whole network is ``nasscale.spec.arch``'s placement.

How a stage downsamples depends on its block type:
  in its first block     mbconv, fused_mbconv, sepconv, conv, the ResNets, depthwise_separable, shuffle
  in an opening layer    convnext (LayerNorm + stride x stride conv), van (3x3 conv + BN), dense (DenseNet's
                         transition: BN, activation, 1x1 conv to half the width, 2x2 average pool),
                         fire and inception (their stage's pool)
  in a closing pool      plain (VGG's conv-conv-pool unit)

Light core: no torch, no numpy.
"""

from __future__ import annotations

from nasscale.spec.channels import conv_output_size, pool_output_size, same_padding
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import (
    DENSE_TRANSITION_POOL,
    POOL_LAYOUTS,
    BlockType,
)

# Blocks that do not take the stride themselves (see the module docstring).
OPENING_LAYER_BLOCKS = frozenset({BlockType.CONVNEXT, BlockType.VAN, BlockType.DENSE, BlockType.FIRE,
                                  BlockType.INCEPTION})
# Of those, the ones that open with a layer only where the shape changes (the others: only at stride 2).
SHAPE_CHANGE_OPENING_BLOCKS = frozenset({BlockType.CONVNEXT, BlockType.VAN})
CLOSING_POOL_BLOCKS = frozenset({BlockType.PLAIN})
STRIDE_OUTSIDE_BLOCKS = OPENING_LAYER_BLOCKS | CLOSING_POOL_BLOCKS  # built once: downsamples_in_block is hot
# Blocks with ResNet's shortcut: always there (projected where the shape changes) unless skip is off.
PROJECTED_SHORTCUT_BLOCKS = frozenset({BlockType.BASIC, BlockType.BOTTLENECK, BlockType.SE_BOTTLENECK,
                                       BlockType.PREACT_BASIC, BlockType.PREACT_BOTTLENECK})
NO_RESIDUAL_BLOCKS = frozenset({BlockType.DEPTHWISE_SEPARABLE, BlockType.SHUFFLE, BlockType.DENSE, BlockType.FIRE,
                                BlockType.INCEPTION, BlockType.PLAIN})


def has_residual(stage: Stage, in_channels: int, stride: int) -> bool:
    """Whether a block adds its input back (VAN blocks always do; concatenating and plain blocks never)."""
    if stage.block in PROJECTED_SHORTCUT_BLOCKS:
        return stage.skip
    if stage.block in NO_RESIDUAL_BLOCKS:
        return False
    if stage.block is BlockType.VAN:
        return True
    return stage.skip and stride == 1 and in_channels == stage.out_channels


def needs_projection(in_channels: int, out_channels: int, stride: int) -> bool:
    return stride != 1 or in_channels != out_channels


def downsamples_in_block(block: BlockType) -> bool:
    return block not in STRIDE_OUTSIDE_BLOCKS


def shuffle_splits(in_channels: int, out_channels: int, stride: int) -> bool:
    """A ShuffleNetV2 unit splits its input when it keeps the shape; otherwise it runs two branches."""
    return stride == 1 and in_channels == out_channels


def convnext_needs_transition(in_channels: int, stage: Stage) -> bool:
    return stage.stride != 1 or in_channels != stage.out_channels


def dense_transition_channels(in_channels: int) -> int:
    return max(1, in_channels // 2)  # DenseNet-BC's compression 0.5


def has_opening_layer(stage: Stage, in_channels: int) -> bool:
    if stage.block in SHAPE_CHANGE_OPENING_BLOCKS:
        return convnext_needs_transition(in_channels, stage)
    return stage.block in OPENING_LAYER_BLOCKS and stage.stride == 2


def opening_output(stage: Stage, in_channels: int, size: int) -> tuple[int, int]:
    """Width and size after a stage's opening layer (unchanged when it has none)."""
    if not has_opening_layer(stage, in_channels):
        return in_channels, size
    match stage.block:
        case BlockType.CONVNEXT:
            return stage.out_channels, conv_output_size(size, stage.stride, stage.stride, 0)
        case BlockType.VAN:
            return stage.out_channels, conv_output_size(size, 3, stage.stride, 1)
        case BlockType.DENSE:
            return dense_transition_channels(in_channels), pool_output_size(size, DENSE_TRANSITION_POOL)
    return in_channels, pool_output_size(size, POOL_LAYOUTS[stage.pool])


def block_padding(stage: Stage) -> int:
    return same_padding(stage.kernel_size) if stage.same_padding else 0


def stage_sizes(stage: Stage, in_channels: int, size: int) -> tuple[int, int, int]:
    """Sizes after the opening layer, after the blocks and after the closing pool; all must be >= 1."""
    _, opened = opening_output(stage, in_channels, size)
    kernel = stage.kernel_size
    if not stage.same_padding:
        blocks = opened - stage.num_blocks * (kernel - 1)
    else:
        stride = stage.stride if downsamples_in_block(stage.block) else 1
        blocks = conv_output_size(opened, kernel, stride, same_padding(kernel))
    closed = blocks
    if stage.block in CLOSING_POOL_BLOCKS and stage.stride == 2:
        closed = pool_output_size(blocks, POOL_LAYOUTS[stage.pool])
    return opened, blocks, closed


def stage_output_size(stage: Stage, in_channels: int, size: int) -> int:
    return stage_sizes(stage, in_channels, size)[2]
