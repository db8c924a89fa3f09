"""Integer rules of widths and sizes, shared by the builder and the cost model: convolution and pooling
output sizes, "same" padding, expanded, bottleneck and squeeze-excite widths, and channel rounding
(``make_divisible``). Plain integers in and out, so ``Stage`` validation can use them too.
"""

from __future__ import annotations

from nasscale.spec.vocabulary import (
    PoolLayout,
    SqueezeExciteStyle,
)

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
