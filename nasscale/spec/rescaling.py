"""EfficientNet's rounding rules and rescaling of an ``Arch``: ``round_filters`` (nearest multiple of 8,
never more than 10% down), ``round_repeats``, ``round_resolution``, and ``scale_arch`` (uniform width, depth
and resolution) or ``scale_arch_nonuniform`` (a depth multiplier per stage, EfficientNetV2-style). The presets
derive EfficientNet B1-B7 with these rules and the scaler searches over them, so they live in the spec.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from nasscale.errors import SpecError
from nasscale.spec.arch import Arch
from nasscale.spec.channels import bottleneck_channels
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import BlockType, HeadType

CHANNEL_DIVISOR = 8
V2_MAX_RESOLUTION = 480  # EfficientNetV2's cap on the inference image size

Channels = tuple[int, tuple[int, ...], int]  # stem, per stage, head


# ---------------------------------------------------------------------------------------------------------------
# Rounding rules


def round_filters(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """EfficientNet's channel rounding: nearest multiple of ``divisor``, never more than 10% down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(num_blocks: int, depth: float) -> int:
    return int(math.ceil(depth * num_blocks))


def round_resolution(resolution: float, multiple: int = 1) -> int:
    return max(multiple, int(round(resolution / multiple)) * multiple)


def scaled_channels(arch: Arch, width: float) -> Channels:
    """Stem, per-stage and head widths after rounding. A ConvNeXt stem is as wide as stage 0; both round the
    same number by the same rule, so they stay equal. A norm head has no width (0), nor does a missing stem (ViT,
    VGG)."""
    stages = tuple(_grouped_width(stage, round_filters(stage.out_channels, width)) for stage in arch.stages)
    head = round_filters(arch.head_channels, width) if arch.head is HeadType.CONV else 0
    stem = round_filters(arch.stem_channels, width) if arch.stem_channels else 0
    return stem, stages, head


def scaled_layers(arch: Arch, stage_depths: Sequence[float]) -> tuple[int, ...]:
    return tuple(round_repeats(stage.num_blocks, depth) for stage, depth in zip(arch.stages, stage_depths, strict=True))


def _group_width(stage: Stage) -> int | None:
    """Channels per group of a grouped bottleneck (ResNeXt, RegNet); None for an ungrouped stage."""
    if stage.groups == 1:
        return None
    return bottleneck_channels(stage.out_channels, stage.bottleneck_ratio) // stage.groups


def _head_width(stage: Stage) -> int | None:
    """Channels per attention head of a transformer stage with several heads; None otherwise."""
    if stage.block is not BlockType.TRANSFORMER or stage.num_heads == 1:
        return None
    return stage.out_channels // stage.num_heads


def _grouped_width(stage: Stage, out_channels: int) -> int:
    """The smallest width >= ``out_channels`` whose bottleneck is a whole number of the stage's groups: scaling
    keeps the group width fixed and adds groups, as RegNet and ResNeXt widen. A transformer stage likewise keeps
    its head width and adds heads (ViT-B to ViT-L: 64-channel heads, 12 to 16 of them)."""
    group_width, head_width = _group_width(stage), _head_width(stage)
    step = CHANNEL_DIVISOR if out_channels % CHANNEL_DIVISOR == 0 else 1  # keep round_filters' multiple of 8
    if head_width is not None:
        while out_channels % head_width:
            out_channels += step
        return out_channels
    if group_width is None:
        return out_channels
    while bottleneck_channels(out_channels, stage.bottleneck_ratio) % group_width:
        out_channels += step
    return out_channels


def rebuild(arch: Arch, channels: Channels, layers: Sequence[int], resolution: int) -> Arch:
    stem, stage_channels, head = channels
    stages = tuple(_rescaled_stage(stage, out_channels, num_blocks)
                   for stage, out_channels, num_blocks in zip(arch.stages, stage_channels, layers, strict=True))
    return arch.replace(stages=stages, stem_channels=stem, head_channels=head, resolution=resolution)


def _rescaled_stage(stage: Stage, out_channels: int, num_blocks: int) -> Stage:
    changes: dict[str, Any] = {"num_blocks": num_blocks, "out_channels": out_channels}
    group_width, head_width = _group_width(stage), _head_width(stage)
    if group_width is not None:
        changes["groups"] = bottleneck_channels(out_channels, stage.bottleneck_ratio) // group_width
    if head_width is not None:
        changes["num_heads"] = out_channels // head_width
    return dataclasses.replace(stage, **changes)


def check_multiplier(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise SpecError(name, f"multiplier must be positive, got {value}")


def scale_arch(arch: Arch, *, width: float = 1.0, depth: float = 1.0, resolution: int | None = None) -> Arch:
    """Scale every stage's width and depth, the stem and the head width, and set the resolution."""
    for name, value in (("width", width), ("depth", depth)):
        check_multiplier(name, value)
    layers = scaled_layers(arch, [depth] * len(arch.stages))
    return rebuild(arch, scaled_channels(arch, width), layers, arch.resolution if resolution is None else resolution)


def scale_arch_nonuniform(base: Arch, width: float, stage_depths: Sequence[float], resolution: int,
                          max_resolution: int | None = V2_MAX_RESOLUTION) -> Arch:
    """Scale width uniformly, each stage's depth by its own multiplier, and set a resolution no larger than
    ``max_resolution`` (EfficientNetV2's cap; None lifts it)."""
    check_multiplier("width", width)
    depths = check_stage_depths(base, stage_depths)
    check_resolution("resolution", resolution)
    if max_resolution is not None and resolution > max_resolution:
        raise SpecError("resolution", f"{resolution} exceeds max_resolution {max_resolution}")
    return rebuild(base, scaled_channels(base, width), scaled_layers(base, depths), resolution)


def check_resolution(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(name, f"must be a positive integer, got {value!r}")


def check_stage_depths(base: Arch, stage_depths: Sequence[float], path: str = "stage_depths") -> tuple[float, ...]:
    depths = tuple(stage_depths)
    if len(depths) != len(base.stages):
        raise SpecError(path, f"needs one multiplier per stage ({len(base.stages)}), got {len(depths)}")
    for index, depth in enumerate(depths):
        check_multiplier(f"{path}[{index}]", depth)
    return depths
