"""Cost rules of Inception-v3's and Inception-ResNet-v2's modules and stem, read off the layouts of
``nasscale.spec.inception`` as ``nasscale.models.inception_blocks`` builds them: every conv a BasicConv2d (no bias,
BatchNorm), a residual module's 1x1 conv with bias. Pools, concatenation, the scaling and the addition count zero.

Light core: no torch.
"""

from __future__ import annotations

from nasscale.spec.arch import Arch, BlockPlacement
from nasscale.spec.channels import pool_output_size
from nasscale.spec.cost_primitives import ZERO, Cost, conv, new_tuple
from nasscale.spec.inception import MIXED_LAYOUTS, branch_widths, concatenated_channels, inception_stem_layers


def rectangular_conv_norm(in_channels: int, out_channels: int, height: int, width: int, output_size: int) -> Cost:
    """A kernel of height x width (1x7, 7x1, ...) without bias, then BatchNorm."""
    weights = out_channels * in_channels * height * width
    return new_tuple(Cost, (weights + 2 * out_channels, weights * output_size * output_size))


def mixed_cost(block: BlockPlacement) -> Cost:
    stage, in_channels, size = block.stage, block.in_channels, block.input_size
    layout = MIXED_LAYOUTS[stage.block]
    total = ZERO
    for branch, layers in zip(layout.branches, branch_widths(layout, stage.branches), strict=True):
        channels, branch_size = in_channels, pool_output_size(size, branch.pool) if branch.pool else size
        for convs, widths in zip(branch.layers, layers, strict=True):
            for kernel, width in zip(convs, widths, strict=True):
                total += rectangular_conv_norm(channels, width, kernel.height, kernel.width,
                                               kernel.output_size(branch_size))
            channels, branch_size = sum(widths), convs[0].output_size(branch_size)
    if layout.residual:
        total += conv(concatenated_channels(layout, stage.branches, in_channels), in_channels, 1, size, bias=True)
    return total


def inception_stem_cost(arch: Arch) -> Cost:
    total, channels = ZERO, arch.in_channels
    for layer, width, output_size in inception_stem_layers(arch.resolution, arch.stem_channels):
        total += rectangular_conv_norm(channels, width, layer.kernel_size, layer.kernel_size, output_size)
        channels = width
    return total
