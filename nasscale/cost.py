"""Analytic cost of an architecture from its spec alone: parameters and MACs, exact to the unit.

MACs are multiply-accumulates of convolutions and linear layers at batch 1: the number the
EfficientNet, MnasNet and ConvNeXt papers and torchvision call "FLOPs". Biases, norms, activations,
pooling, additions and multiplications count zero. ``torch.utils.flop_counter`` reports twice this.

Each function below mirrors one module of ``blocks.py`` layer by layer; the agreement tests build
random architectures and check both against fvcore and torch's FlopCounterMode.

Light core: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from nasscale.arch import (
    PATCHIFY_SIZE,
    Arch,
    BlockPlacement,
    BlockType,
    HeadType,
    StagePlacement,
    StemType,
    conv_output_size,
    expanded_channels,
    final_feature_size,
    has_residual,
    iter_blocks,
    iter_stages,
    last_channels,
    squeeze_channels,
    stage_blocks,
    stem_output_size,
)


class Cost(NamedTuple):
    """Parameters and MACs. A NamedTuple rather than a dataclass: cost() adds hundreds of these per
    architecture inside search loops, and tuples are several times cheaper to create."""

    params: int = 0
    macs: int = 0

    def __add__(self, other: Cost) -> Cost:  # type: ignore[override]  # element-wise, not concatenation
        return Cost(self.params + other.params, self.macs + other.macs)

    def __mul__(self, times: int) -> Cost:  # type: ignore[override]
        return Cost(self.params * times, self.macs * times)


ZERO = Cost()


def conv(in_channels: int, out_channels: int, kernel_size: int, output_size: int, *,
         groups: int = 1, bias: bool = False) -> Cost:
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    return Cost(weights + (out_channels if bias else 0), weights * output_size * output_size)


def norm(channels: int) -> Cost:
    return Cost(2 * channels, 0)  # weight and bias; running statistics are buffers, not parameters


def linear(in_features: int, out_features: int, positions: int = 1) -> Cost:
    return Cost(in_features * out_features + out_features, in_features * out_features * positions)


def squeeze_excite(channels: int, squeezed: int) -> Cost:
    # Two 1x1 convolutions with bias on the pooled 1x1 map.
    return conv(channels, squeezed, 1, 1, bias=True) + conv(squeezed, channels, 1, 1, bias=True)


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, output_size: int, groups: int = 1) -> Cost:
    return conv(in_channels, out_channels, kernel_size, output_size, groups=groups) + norm(out_channels)


def block_cost(block: BlockPlacement) -> Cost:
    stage, in_channels = block.stage, block.in_channels
    out_channels, kernel = stage.out_channels, stage.kernel_size
    output_size = block.output_size
    squeezed = squeeze_channels(in_channels, stage.se_ratio)
    match stage.block:
        case BlockType.MBCONV:
            hidden = expanded_channels(in_channels, stage.expand_ratio)
            cost = ZERO
            if hidden != in_channels:
                cost += conv_norm(in_channels, hidden, 1, block.input_size)
            cost += conv_norm(hidden, hidden, kernel, output_size, groups=hidden)
            if stage.se_ratio > 0:
                cost += squeeze_excite(hidden, squeezed)
            return cost + conv_norm(hidden, out_channels, 1, output_size)
        case BlockType.FUSED_MBCONV:
            hidden = expanded_channels(in_channels, stage.expand_ratio)
            if hidden == in_channels:
                cost = conv_norm(in_channels, out_channels, kernel, output_size)
                return cost + (squeeze_excite(out_channels, squeezed) if stage.se_ratio > 0 else ZERO)
            cost = conv_norm(in_channels, hidden, kernel, output_size)
            if stage.se_ratio > 0:
                cost += squeeze_excite(hidden, squeezed)
            return cost + conv_norm(hidden, out_channels, 1, output_size)
        case BlockType.SEPCONV:
            cost = conv_norm(in_channels, in_channels, kernel, output_size, groups=in_channels)
            if stage.se_ratio > 0:
                cost += squeeze_excite(in_channels, squeezed)
            return cost + conv_norm(in_channels, out_channels, 1, output_size)
        case BlockType.CONV:
            return conv_norm(in_channels, out_channels, kernel, output_size)
        case BlockType.CONVNEXT:
            hidden = expanded_channels(out_channels, stage.expand_ratio)
            positions = block.input_size * block.input_size
            return (
                conv(out_channels, out_channels, kernel, output_size, groups=out_channels, bias=True)
                + norm(out_channels)
                + linear(out_channels, hidden, positions)
                + linear(hidden, out_channels, positions)
                + Cost(out_channels, 0)  # layer scale
            )
    raise ValueError(f"no cost rule for block type {stage.block!r}")


def convnext_transition_cost(in_channels: int, out_channels: int, stride: int, input_size: int) -> Cost:
    output_size = conv_output_size(input_size, stride, stride, 0)
    return norm(in_channels) + conv(in_channels, out_channels, stride, output_size, bias=True)


def stem_cost(arch: Arch) -> Cost:
    size = stem_output_size(arch)
    if arch.stem is StemType.PATCHIFY:
        return conv(arch.in_channels, arch.stem_channels, PATCHIFY_SIZE, size, bias=True) + norm(arch.stem_channels)
    return conv_norm(arch.in_channels, arch.stem_channels, 3, size)


def head_cost(arch: Arch) -> Cost:
    features = last_channels(arch)
    if arch.head is HeadType.NORM:
        return norm(features) + linear(features, arch.num_classes)
    size = final_feature_size(arch)
    return conv_norm(features, arch.head_channels, 1, size) + linear(arch.head_channels, arch.num_classes)


@dataclass(frozen=True, slots=True)
class PartCost:
    name: str  # "stem", "stages[3]", "head"
    params: int
    macs: int


def stage_cost(placement: StagePlacement) -> Cost:
    total = ZERO
    if placement.has_transition:
        stage = placement.stage
        total += convnext_transition_cost(placement.in_channels, stage.out_channels, stage.stride,
                                          placement.input_size)
    # Blocks after the first repeat the same shapes, so one of them stands for all.
    blocks = stage_blocks(placement)
    total += block_cost(next(blocks))
    repeated = next(blocks, None)
    if repeated is not None:
        total += block_cost(repeated) * (placement.stage.num_blocks - 1)
    return total


def cost_breakdown(arch: Arch) -> list[PartCost]:
    """Cost per part: the stem, each stage (ConvNeXt downsampling included) and the head."""
    parts = [("stem", stem_cost(arch))]
    parts += [(f"stages[{placement.index}]", stage_cost(placement)) for placement in iter_stages(arch)]
    parts.append(("head", head_cost(arch)))
    return [PartCost(name, part.params, part.macs) for name, part in parts]


def cost(arch: Arch) -> Cost:
    """Exact parameters and MACs (batch 1) of ``build(arch)``, without building it."""
    total = stem_cost(arch) + head_cost(arch)
    for placement in iter_stages(arch):
        total += stage_cost(placement)
    return total


def residual_blocks(arch: Arch) -> int:
    """How many blocks add their input back (useful in summaries and tests)."""
    return sum(1 for block in iter_blocks(arch) if has_residual(block.stage, block.in_channels, block.stride))


def cost_report(arch: Arch, *, check: bool = False) -> dict:
    """Cost as plain data for the CLI and scripts; ``check`` also builds the model and counts it with
    the two oracles (imports torch)."""
    total = cost(arch)
    report = {
        "arch_id": arch.arch_id,
        "params": total.params,
        "macs": total.macs,
        "resolution": arch.resolution,
        "parts": [{"name": part.name, "params": part.params, "macs": part.macs} for part in cost_breakdown(arch)],
    }
    if check:
        from nasscale.measure import measure_counts

        counts = measure_counts(arch)
        report |= {
            "params_built": counts.params_built,
            "macs_fvcore": counts.macs_fvcore,
            "macs_torch": counts.macs_torch,
            "counts_agree": (counts.params_built == total.params
                             and counts.macs_fvcore == total.macs == counts.macs_torch),
        }
    return report
