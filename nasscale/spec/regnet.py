"""RegNet's width and depth rule (Radosavovic et al. 2020, "Designing Network Design Spaces", Section 3.3): six
numbers make the stages of a network.

Block j of ``depth`` gets the continuous width u_j = w0 + wa * j, quantised to w0 * wm^round(log(u_j / w0) /
log(wm)) rounded to a multiple of 8; consecutive blocks of one width form a stage (stride 2 each). Widths are
then made compatible with the group width: the bottleneck width (width x bottleneck_ratio) becomes a multiple of
min(group width, bottleneck width). This is torchvision's ``BlockParams.from_init_params`` step for step
(torchvision's bottleneck_multiplier is our bottleneck_ratio; the paper's b is its inverse).

Light core: no torch, no numpy (the arithmetic is Python's float64; torchvision's is float32, which agrees on
every published model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nasscale.errors import SpecError
from nasscale.spec.channels import make_divisible
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType

WIDTH_QUANTUM = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class RegNetParameters:
    depth: int  # blocks in all
    w0: int  # initial width, a multiple of 8
    wa: float  # slope of the widths
    wm: float  # width multiplier between stages, > 1
    group_width: int
    bottleneck_ratio: float = 1.0
    se_ratio: float = 0.0  # RegNetY: 0.25

    def __post_init__(self) -> None:
        check_regnet_parameter("depth", self.depth)
        check_regnet_parameter("w0", self.w0)
        check_regnet_parameter("wa", self.wa)
        check_regnet_parameter("wm", self.wm)
        check_regnet_parameter("group_width", self.group_width)
        check_regnet_parameter("bottleneck_ratio", self.bottleneck_ratio)
        check_regnet_parameter("se_ratio", self.se_ratio)


REGNET_PARAMETERS = ("depth", "w0", "wa", "wm", "group_width", "bottleneck_ratio", "se_ratio")


def check_regnet_parameter(name: str, value: object) -> None:
    """One parameter on its own; the message names it and the value."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise SpecError(name, f"must be a number, got {value!r}")
    if name in ("depth", "w0", "group_width") and not isinstance(value, int):
        raise SpecError(name, f"must be an integer, got {value!r}")
    problem = {
        "depth": value < 1,
        "w0": value < WIDTH_QUANTUM or value % WIDTH_QUANTUM,
        "wa": value < 0,
        "wm": value <= 1,
        "group_width": value < 1,
        "bottleneck_ratio": not 0 < value <= 1,
        "se_ratio": not 0 <= value <= 1,
    }[name]
    if problem:
        rule = {"depth": "at least 1", "w0": f"a positive multiple of {WIDTH_QUANTUM}", "wa": "at least 0",
                "wm": "greater than 1", "group_width": "at least 1", "bottleneck_ratio": "in (0, 1]",
                "se_ratio": "in [0, 1]"}[name]
        raise SpecError(name, f"must be {rule}, got {value!r}")


def block_widths(depth: int, w0: int, wa: float, wm: float) -> list[int]:
    widths = []
    for index in range(depth):
        continuous = w0 + wa * index
        exponent = round(math.log(continuous / w0) / math.log(wm))
        widths.append(int(round(w0 * wm ** exponent / WIDTH_QUANTUM) * WIDTH_QUANTUM))
    return widths


def regnet_stages(parameters: RegNetParameters) -> tuple[Stage, ...]:
    """The stages of the RegNet with these parameters: bottleneck blocks, ReLU, stride 2 per stage."""
    widths = block_widths(parameters.depth, parameters.w0, parameters.wa, parameters.wm)
    stage_widths: list[int] = []
    stage_depths: list[int] = []
    for width in widths:
        if stage_widths and stage_widths[-1] == width:
            stage_depths[-1] += 1
        else:
            stage_widths.append(width)
            stage_depths.append(1)
    ratio = parameters.bottleneck_ratio
    stages = []
    for width, depth in zip(stage_widths, stage_depths, strict=True):
        bottleneck = int(width * ratio)
        group_width = min(parameters.group_width, bottleneck)
        bottleneck = make_divisible(bottleneck, group_width)
        width = int(bottleneck / ratio)
        groups = round(width * ratio) // group_width
        stages.append(Stage(block=BlockType.BOTTLENECK, num_blocks=depth, out_channels=width, stride=2,
                            bottleneck_ratio=ratio, groups=groups, se_ratio=parameters.se_ratio,
                            activation=Activation.RELU))
    return tuple(stages)
