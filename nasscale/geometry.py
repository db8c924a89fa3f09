"""Derived quantities shared by the builder (build.py) and the cost model (cost.py): widths, sizes,
residual rules and where each block sits. ``nasscale.arch`` re-exports every name here.

How a stage downsamples depends on its block type:
  in its first block     mbconv, fused_mbconv, sepconv, conv, the ResNets, depthwise_separable, shuffle
  in an opening layer    convnext (LayerNorm + stride x stride conv), van (3x3 conv + BN), dense (DenseNet's
                         transition: BN, activation, 1x1 conv to half the width, 2x2 average pool),
                         fire and inception (their stage's pool)
  in a closing pool      plain (VGG's conv-conv-pool unit)

Light core: no torch, no numpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from nasscale.arch import (
    DENSE_TRANSITION_POOL,
    POOL_LAYOUTS,
    STEM_LAYOUTS,
    BlockType,
    PoolLayout,
    SqueezeExciteStyle,
    Stage,
    StemType,
)

if TYPE_CHECKING:
    from nasscale.arch import Arch

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
SE_DIVISOR = 8  # MobileNetV3 rounds its squeeze widths to multiples of 8


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def pool_output_size(size: int, layout: PoolLayout) -> int:
    """PyTorch's pooling size, ceil mode included (a last window must start inside the input)."""
    extra = layout.stride - 1 if layout.ceil_mode else 0
    output = (size + 2 * layout.padding - layout.kernel_size + extra) // layout.stride + 1
    if layout.ceil_mode and (output - 1) * layout.stride >= size + layout.padding:
        output -= 1
    return output


def same_padding(kernel_size: int) -> int:
    return kernel_size // 2


def expanded_channels(in_channels: int, expand_ratio: float) -> int:
    # round() rather than a multiple of 8: for the integer ratios of every published model the two
    # agree, and this keeps fractional search choices (e.g. 2.5) meaningful.
    return max(1, round(in_channels * expand_ratio))


def bottleneck_channels(out_channels: int, bottleneck_ratio: float) -> int:
    return max(1, round(out_channels * bottleneck_ratio))


def make_divisible(value: float, divisor: int = SE_DIVISOR) -> int:
    """torchvision's _make_divisible: nearest multiple of ``divisor``, never more than 10% down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def squeeze_channels(in_channels: int, se_ratio: float, gated_channels: int | None = None,
                     style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET) -> int:
    """The squeeze width of an SE gating ``gated_channels`` in a block fed ``in_channels``."""
    if style is SqueezeExciteStyle.MOBILENET_V3:
        return make_divisible((in_channels if gated_channels is None else gated_channels) * se_ratio)
    return max(1, int(in_channels * se_ratio))


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


# Every stem but StemType.NONE has a layout, so STEM_LAYOUTS.get(stem) is None exactly when there is no stem
# (a dict lookup: in Python 3.11, reading an enum member such as StemType.NONE is several times slower).
def stem_conv_size(arch: Arch) -> int:
    layout = STEM_LAYOUTS.get(arch.stem)
    if layout is None:
        return arch.resolution
    return conv_output_size(arch.resolution, layout.kernel_size, layout.stride, layout.padding)


def stem_output_size(arch: Arch) -> int:
    size = stem_conv_size(arch)
    layout = STEM_LAYOUTS.get(arch.stem)
    return size if layout is None or layout.pool is None else pool_output_size(size, layout.pool)


def stem_stride(stem: StemType) -> int:
    """How much the stem downsamples (for even sizes)."""
    if stem is StemType.NONE:
        return 1
    layout = STEM_LAYOUTS[stem]
    return layout.stride * (layout.pool.stride if layout.pool else 1)


def first_stage_channels(arch: Arch) -> int:
    return arch.stem_channels if arch.stem in STEM_LAYOUTS else arch.in_channels


class StagePlacement(NamedTuple):
    """One stage with its input width and size, as the builder and the cost model place it.

    NamedTuples rather than frozen dataclasses, here and for BlockPlacement: cost() creates one per stage and
    block inside search loops, and a frozen dataclass's __init__ (object.__setattr__ per field) is several
    times slower."""

    index: int
    stage: Stage
    in_channels: int
    input_size: int  # spatial size (square) of the stage's input
    first_block_index: int  # over the whole network, for the drop-path ramp
    se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET

    @property
    def has_transition(self) -> bool:
        """Whether the stage opens with a layer of its own (ConvNeXt/VAN downsampling, DenseNet transition, a
        fire or inception stage's pool)."""
        return has_opening_layer(self.stage, self.in_channels)

    @property
    def blocks_in_channels(self) -> int:
        return opening_output(self.stage, self.in_channels, self.input_size)[0]

    @property
    def blocks_input_size(self) -> int:
        return opening_output(self.stage, self.in_channels, self.input_size)[1]

    @property
    def blocks_output_size(self) -> int:
        return stage_sizes(self.stage, self.in_channels, self.input_size)[1]

    @property
    def has_closing_pool(self) -> bool:
        return self.stage.block in CLOSING_POOL_BLOCKS and self.stage.stride == 2


class BlockPlacement(NamedTuple):
    """One block of the network with everything the builder and cost model need to place it."""

    stage: Stage
    block_index: int  # over the whole network, for the drop-path ramp
    in_channels: int
    stride: int
    input_size: int  # spatial size (square) of the block's input
    out_channels: int  # the stage's, but a dense layer's input plus the growth rate
    se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, self.stage.kernel_size, self.stride, block_padding(self.stage))

    @property
    def squeezed(self) -> int:
        """The squeeze width of the block's SE (on the width it gates; see squeeze_channels)."""
        stage = self.stage
        return squeeze_channels(self.in_channels, stage.se_ratio, self.se_gated_channels, self.se_style)

    @property
    def se_gated_channels(self) -> int:
        stage, in_channels = self.stage, self.in_channels
        match stage.block:
            case BlockType.MBCONV:
                return expanded_channels(in_channels, stage.expand_ratio)
            case BlockType.FUSED_MBCONV:
                hidden = expanded_channels(in_channels, stage.expand_ratio)
                return stage.out_channels if hidden == in_channels else hidden
            case BlockType.BOTTLENECK:
                return bottleneck_channels(stage.out_channels, stage.bottleneck_ratio)
        return in_channels


def dense_growth(stage: Stage, blocks_in_channels: int) -> int:
    return (stage.out_channels - blocks_in_channels) // stage.num_blocks


def placed_stages(arch: Arch) -> Iterator[tuple[StagePlacement, int]]:
    """Each stage's placement with its output size: the walk derives that size anyway (the next stage's input),
    and the last one, the head's input, would otherwise be derived again."""
    size = stem_output_size(arch)
    in_channels = first_stage_channels(arch)
    first_block_index = 0
    for index, stage in enumerate(arch.stages):
        output_size = stage_output_size(stage, in_channels, size)
        yield StagePlacement(index, stage, in_channels, size, first_block_index, arch.se_style), output_size
        size, in_channels = output_size, stage.out_channels
        first_block_index += stage.num_blocks


def iter_stages(arch: Arch) -> Iterator[StagePlacement]:
    for placement, _ in placed_stages(arch):
        yield placement


def stage_blocks(placement: StagePlacement) -> Iterator[BlockPlacement]:
    stage = placement.stage
    in_channels, size = opening_output(stage, placement.in_channels, placement.input_size)
    growth = dense_growth(stage, in_channels) if stage.block is BlockType.DENSE else 0
    stride = stage.stride if downsamples_in_block(stage.block) else 1  # the first block's; the rest take 1
    padding = block_padding(stage)
    for repeat in range(stage.num_blocks):
        out_channels = in_channels + growth if growth else stage.out_channels
        yield BlockPlacement(stage, placement.first_block_index + repeat, in_channels, stride, size, out_channels,
                             placement.se_style)
        size = conv_output_size(size, stage.kernel_size, stride, padding)  # the block's output_size
        in_channels, stride = out_channels, 1


def iter_blocks(arch: Arch) -> Iterator[BlockPlacement]:
    for placement in iter_stages(arch):
        yield from stage_blocks(placement)


def total_blocks(arch: Arch) -> int:
    return sum(stage.num_blocks for stage in arch.stages)


def final_feature_size(arch: Arch) -> int:
    *_, (_, size) = placed_stages(arch)
    return size


def last_channels(arch: Arch) -> int:
    return arch.stages[-1].out_channels
