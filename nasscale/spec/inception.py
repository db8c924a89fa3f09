"""The layouts of Inception-v3's and Inception-ResNet-v2's modules and of their shared stem, as data: the cost rules
(``nasscale.spec.inception_cost``) and the builder (``nasscale.models.inception_blocks``) both walk these tables, so
the two cannot drift apart.

A module is branches on the same input, concatenated. A branch is an optional pool, then layers of convs; a layer of
two convs applies both to the same input and concatenates them (Inception-v3's 8x8 module splits a 3x3 into 1x3
and 3x1). Every conv is a BasicConv2d: conv without bias, BatchNorm, activation. A stride-1 conv is "same" padded
(a 1x7 by (0, 3)), a stride-2 one unpadded, as is every stride-2 pool: a reduction module takes a size n to
(n - 3) // 2 + 1 in every branch. A pool branch without convs passes the input through (the reductions), so the
module's width is its convs' plus its input's. A residual module (Inception-ResNet's) ends with a 1x1 conv with bias
back to its input width, scales it by ``residual_scale``, adds the input and applies the activation unless
``output_activation`` is off (the last Block8 of Inception-ResNet-v2).

The widths are a stage's ``branches``: one per conv, branch by branch, layer by layer, in the order the tables list
them (torchvision's inception.py and timm's inception_resnet_v2.py declare their convs in the same order).

Light core: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from nasscale.spec.channels import conv_output_size, pool_output_size
from nasscale.spec.vocabulary import BlockType, PoolLayout


@dataclass(frozen=True, slots=True)
class Conv:
    height: int  # kernel height and width: (1, 7) is a 1x7
    width: int
    stride: int = 1

    @property
    def padding(self) -> tuple[int, int]:
        return (self.height // 2, self.width // 2) if self.stride == 1 else (0, 0)

    def output_size(self, size: int) -> int:
        # Square maps: a 1xk "same" conv keeps both sides, so the height's rule gives the size.
        return conv_output_size(size, self.height, self.stride, self.padding[0])


@dataclass(frozen=True, slots=True)
class Branch:
    layers: tuple[tuple[Conv, ...], ...]  # each layer's convs take the same input and are concatenated
    pool: PoolLayout | None = None  # before the convs
    count_include_pad: bool = True  # of an average pool: torchvision's F.avg_pool2d default; timm's Mixed_5b: False


@dataclass(frozen=True, slots=True)
class MixedLayout:
    branches: tuple[Branch, ...]
    residual: bool = False  # Inception-ResNet: 1x1 conv with bias to the input width, scaled, added

    @property
    def convs(self) -> int:
        return sum(len(layer) for branch in self.branches for layer in branch.layers)

    @property
    def reduction(self) -> bool:
        return any(conv.stride == 2 for branch in self.branches for layer in branch.layers for conv in layer)


ONE = Conv(1, 1)
THREE = Conv(3, 3)
THREE_DOWN = Conv(3, 3, stride=2)
AVERAGE = PoolLayout(3, stride=1, padding=1, average=True)
MAX_DOWN = PoolLayout(3, stride=2)


def _line(*convs: Conv) -> tuple[tuple[Conv, ...], ...]:
    return tuple((conv,) for conv in convs)


_V3_A = MixedLayout((Branch(_line(ONE)), Branch(_line(ONE, Conv(5, 5))), Branch(_line(ONE, THREE, THREE)),
                     Branch(_line(ONE), pool=AVERAGE)))
_REDUCTION_A = MixedLayout((Branch(_line(THREE_DOWN)), Branch(_line(ONE, THREE, THREE_DOWN)),
                            Branch((), pool=MAX_DOWN)))
MIXED_LAYOUTS: dict[BlockType, MixedLayout] = {
    BlockType.INCEPTION_V3_A: _V3_A,
    BlockType.INCEPTION_V3_B: _REDUCTION_A,  # also Inception-ResNet-v2's Mixed_6a (Reduction-A)
    BlockType.INCEPTION_V3_C: MixedLayout((
        Branch(_line(ONE)), Branch(_line(ONE, Conv(1, 7), Conv(7, 1))),
        Branch(_line(ONE, Conv(7, 1), Conv(1, 7), Conv(7, 1), Conv(1, 7))), Branch(_line(ONE), pool=AVERAGE))),
    BlockType.INCEPTION_V3_D: MixedLayout((
        Branch(_line(ONE, THREE_DOWN)), Branch(_line(ONE, Conv(1, 7), Conv(7, 1), THREE_DOWN)),
        Branch((), pool=MAX_DOWN))),
    BlockType.INCEPTION_V3_E: MixedLayout((
        Branch(_line(ONE)), Branch(((ONE,), (Conv(1, 3), Conv(3, 1)))),
        Branch(((ONE,), (THREE,), (Conv(1, 3), Conv(3, 1)))), Branch(_line(ONE), pool=AVERAGE))),
    BlockType.INCEPTION_RESNET_MIXED_5B: MixedLayout((*_V3_A.branches[:3], Branch(_line(ONE), pool=AVERAGE,
                                                                                  count_include_pad=False))),
    BlockType.INCEPTION_RESNET_A: MixedLayout((Branch(_line(ONE)), Branch(_line(ONE, THREE)),
                                               Branch(_line(ONE, THREE, THREE))), residual=True),
    BlockType.INCEPTION_RESNET_B: MixedLayout((Branch(_line(ONE)), Branch(_line(ONE, Conv(1, 7), Conv(7, 1)))),
                                              residual=True),
    BlockType.INCEPTION_RESNET_C: MixedLayout((Branch(_line(ONE)), Branch(_line(ONE, Conv(1, 3), Conv(3, 1)))),
                                              residual=True),
    BlockType.INCEPTION_RESNET_REDUCTION_B: MixedLayout((
        Branch(_line(ONE, THREE_DOWN)), Branch(_line(ONE, THREE_DOWN)), Branch(_line(ONE, THREE, THREE_DOWN)),
        Branch((), pool=MAX_DOWN))),
}
MIXED_BLOCKS = frozenset(MIXED_LAYOUTS)
RESIDUAL_MIXED_BLOCKS = frozenset(block for block, layout in MIXED_LAYOUTS.items() if layout.residual)
REDUCTION_MIXED_BLOCKS = frozenset(block for block, layout in MIXED_LAYOUTS.items() if layout.reduction)
# Blocks whose input passes through to the output (a pool branch without convs): their width depends on the input's.
PASSTHROUGH_MIXED_BLOCKS = frozenset(block for block, layout in MIXED_LAYOUTS.items()
                                     if any(not branch.layers for branch in layout.branches))


def branch_widths(layout: MixedLayout, widths: tuple[int, ...]) -> list[list[list[int]]]:
    """``widths`` (a stage's branches) cut along the layout: per branch, per layer, per conv."""
    remaining = iter(widths)
    return [[[next(remaining) for _ in layer] for layer in branch.layers] for branch in layout.branches]


def concatenated_channels(layout: MixedLayout, widths: tuple[int, ...], in_channels: int) -> int:
    """The width of the branches' concatenation: each branch's last layer, or the input for a pass-through."""
    return sum(sum(layers[-1]) if layers else in_channels for layers in branch_widths(layout, widths))


def mixed_output_channels(block: BlockType, widths: tuple[int, ...], in_channels: int) -> int:
    layout = MIXED_LAYOUTS[block]
    return in_channels if layout.residual else concatenated_channels(layout, widths, in_channels)


# ------------------------------------------------------------------------------------------------------ the stem


@dataclass(frozen=True, slots=True)
class StemConv:
    kernel_size: int
    stride: int
    padding: int
    out_channels: int  # 0: the stem's width, stem_channels
    pool_after: bool = False  # a 3x3/2 max pool follows


# torchvision Inception3 Conv2d_1a_3x3 to maxpool2; timm InceptionResnetV2 conv2d_1a to maxpool_5a: the same layers.
INCEPTION_STEM = (
    StemConv(3, 2, 0, 32),  # Conv2d_1a_3x3
    StemConv(3, 1, 0, 32),  # Conv2d_2a_3x3
    StemConv(3, 1, 1, 64, pool_after=True),  # Conv2d_2b_3x3, maxpool1
    StemConv(1, 1, 0, 80),  # Conv2d_3b_1x1
    StemConv(3, 1, 0, 0, pool_after=True),  # Conv2d_4a_3x3 (192 wide in both), maxpool2
)


def inception_stem_layers(resolution: int, stem_channels: int) -> list[tuple[StemConv, int, int]]:
    """(layer, its width, its conv's output size) for each conv of the stem, and the size after the stem."""
    layers, size = [], resolution
    for layer in INCEPTION_STEM:
        size = conv_output_size(size, layer.kernel_size, layer.stride, layer.padding)
        layers.append((layer, layer.out_channels or stem_channels, size))
        if layer.pool_after:
            size = pool_output_size(size, MAX_DOWN)
    return layers


def inception_stem_output_size(resolution: int) -> int:
    """The stem's output size; below 1 where the resolution is too small (27 px is the smallest that works)."""
    size = resolution
    for layer in INCEPTION_STEM:
        size = conv_output_size(size, layer.kernel_size, layer.stride, layer.padding)
        if size < 1:
            return size
        if layer.pool_after:
            size = pool_output_size(size, MAX_DOWN)
    return size
