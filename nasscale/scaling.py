"""Scaling rules: width (channel rounding), depth (layer rounding) and resolution.

These are the rules EfficientNet used to derive B1-B7 from B0; the presets apply them rather than
typing the scaled models in, and the compound-scaling solver builds on them.

Light core: no torch.
"""

from __future__ import annotations

import dataclasses
import math

from nasscale.arch import Arch, HeadType, Stage
from nasscale.errors import SpecError

CHANNEL_DIVISOR = 8


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


def scale_stage(stage: Stage, width: float, depth: float) -> Stage:
    return dataclasses.replace(stage, num_blocks=round_repeats(stage.num_blocks, depth),
                               out_channels=round_filters(stage.out_channels, width))


def scale_arch(arch: Arch, *, width: float = 1.0, depth: float = 1.0, resolution: int | None = None) -> Arch:
    """Scale every stage's width and depth, the stem and the head width, and set the resolution."""
    for name, value in (("width", width), ("depth", depth)):
        if not value > 0:
            raise SpecError(name, f"multiplier must be positive, got {value}")
    return arch.replace(
        stages=tuple(scale_stage(stage, width, depth) for stage in arch.stages),
        stem_channels=round_filters(arch.stem_channels, width),
        head_channels=round_filters(arch.head_channels, width) if arch.head is HeadType.CONV else 0,
        resolution=arch.resolution if resolution is None else resolution,
    )

