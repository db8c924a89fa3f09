"""The rules of one stage, shared by the builder (``nasscale.models.build``) and the cost model
(``nasscale.spec.cost``): residual and projection rules, opening layers, padding and the sizes a stage
produces. Where each stage and block sits in a whole network is ``nasscale.spec.arch``'s placement.

How a stage downsamples depends on its block type:
  in its first block     mbconv, fused_mbconv, sepconv, conv, the ResNets, depthwise_separable, shuffle
  in an opening layer    convnext (LayerNorm + stride x stride conv), van (3x3 conv + BN), dense (DenseNet's
                         transition: BN, activation, 1x1 conv to half the width, 2x2 average pool),
                         fire and inception (their stage's pool), transformer (its patch embedding, below)
  in a closing pool      plain (VGG's conv-conv-pool unit)

A transformer stage opens with a patch embedding: a conv with bias whose kernel and stride are the patch side
(stride x patch_size: ViT-B/16's 16, a stride-2 stage's 2), where that side is above 1 or the width changes; then
its class token and position embedding, where it has them. The map is zero-padded on the right and bottom to a
multiple of the patch (timm's dynamic_img_pad), so every size has ceil(size / patch) patches a side and ViT's 224/16
pads nothing. Its blocks keep the size; their tokens are the map's positions, the class token first.

Light core: no torch, no numpy.
"""

from __future__ import annotations

from nasscale.spec.channels import conv_output_size, pool_output_size, same_padding
from nasscale.spec.inception import MIXED_BLOCKS, REDUCTION_MIXED_BLOCKS, RESIDUAL_MIXED_BLOCKS
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import (
    DENSE_TRANSITION_POOL,
    POOL_LAYOUTS,
    BlockType,
)

# Blocks that do not take the stride themselves (see the module docstring).
OPENING_LAYER_BLOCKS = frozenset({BlockType.CONVNEXT, BlockType.VAN, BlockType.DENSE, BlockType.FIRE,
                                  BlockType.INCEPTION, BlockType.TRANSFORMER})
# Of those, the ones that open with a layer only where the shape changes (the others: only at stride 2).
SHAPE_CHANGE_OPENING_BLOCKS = frozenset({BlockType.CONVNEXT, BlockType.VAN})
CLOSING_POOL_BLOCKS = frozenset({BlockType.PLAIN})
STRIDE_OUTSIDE_BLOCKS = OPENING_LAYER_BLOCKS | CLOSING_POOL_BLOCKS  # built once: downsamples_in_block is hot
# Blocks with ResNet's shortcut: always there (projected where the shape changes) unless skip is off.
PROJECTED_SHORTCUT_BLOCKS = frozenset({BlockType.BASIC, BlockType.BOTTLENECK, BlockType.SE_BOTTLENECK,
                                       BlockType.PREACT_BASIC, BlockType.PREACT_BOTTLENECK})
NO_RESIDUAL_BLOCKS = frozenset({BlockType.DEPTHWISE_SEPARABLE, BlockType.SHUFFLE, BlockType.DENSE, BlockType.FIRE,
                                BlockType.INCEPTION, BlockType.PLAIN}) | (MIXED_BLOCKS - RESIDUAL_MIXED_BLOCKS)
# Blocks that always add their input back.
ALWAYS_RESIDUAL_BLOCKS = frozenset({BlockType.VAN, BlockType.TRANSFORMER}) | RESIDUAL_MIXED_BLOCKS


def has_residual(stage: Stage, in_channels: int, stride: int) -> bool:
    """Whether a block adds its input back (VAN blocks always do; concatenating and plain blocks never)."""
    if stage.block in PROJECTED_SHORTCUT_BLOCKS:
        return stage.skip
    if stage.block in NO_RESIDUAL_BLOCKS:
        return False
    if stage.block in ALWAYS_RESIDUAL_BLOCKS:
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


def patch_side(stage: Stage) -> int:
    """The side of a transformer stage's patches (see the module docstring)."""
    return stage.stride * stage.patch_size


def patch_grid_size(size: int, patch: int) -> int:
    return -(-size // patch)  # ceil: the map is padded to a multiple of the patch


def embeds_patches(stage: Stage, in_channels: int) -> bool:
    """Whether a transformer stage opens with a patch embedding conv."""
    return patch_side(stage) != 1 or in_channels != stage.out_channels


def transformer_tokens(stage: Stage, size: int) -> int:
    """Tokens of a transformer block on a size x size map: its positions, and the class token."""
    return size * size + (1 if stage.class_token else 0)


def has_opening_layer(stage: Stage, in_channels: int) -> bool:
    if stage.block is BlockType.TRANSFORMER:
        return embeds_patches(stage, in_channels) or stage.class_token or stage.position_embedding
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
        case BlockType.TRANSFORMER:
            if embeds_patches(stage, in_channels):
                return stage.out_channels, patch_grid_size(size, patch_side(stage))
            return in_channels, size
    return in_channels, pool_output_size(size, POOL_LAYOUTS[stage.pool])


def block_padding(stage: Stage) -> int:
    """The padding of a block's size rule; an Inception reduction's stride-2 3x3s and pools are unpadded."""
    if stage.block in REDUCTION_MIXED_BLOCKS:
        return 0
    return same_padding(stage.kernel_size) if stage.same_padding else 0


def stage_sizes(stage: Stage, in_channels: int, size: int) -> tuple[int, int, int]:
    """Sizes after the opening layer, after the blocks and after the closing pool; all must be >= 1."""
    _, opened = opening_output(stage, in_channels, size)
    kernel = stage.kernel_size
    if not stage.same_padding:
        blocks = opened - stage.num_blocks * (kernel - 1)
    else:
        stride = stage.stride if downsamples_in_block(stage.block) else 1
        blocks = conv_output_size(opened, kernel, stride, block_padding(stage))
    closed = blocks
    if stage.block in CLOSING_POOL_BLOCKS and stage.stride == 2:
        closed = pool_output_size(blocks, POOL_LAYOUTS[stage.pool])
    return opened, blocks, closed


def stage_output_size(stage: Stage, in_channels: int, size: int) -> int:
    return stage_sizes(stage, in_channels, size)[2]
