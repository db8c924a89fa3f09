"""``Stage``: one stage of an architecture, a run of ``num_blocks`` blocks of one type, validated on
construction (every check names the field path and the value received), and the field checks that ``Arch``
validation shares.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nasscale.errors import SpecError
from nasscale.spec.channels import (
    bottleneck_channels,
)
from nasscale.spec.inception import MIXED_LAYOUTS, PASSTHROUGH_MIXED_BLOCKS, concatenated_channels
from nasscale.spec.vocabulary import (
    APPLICABLE_FIELDS,
    INCEPTION_BRANCHES,
    MAX_BOTTLENECK_RATIO,
    MAX_KERNEL_SIZE,
    MAX_PATCH_SIZE,
    Activation,
    BlockType,
    Pool,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    block: BlockType
    num_blocks: int
    out_channels: int
    stride: int  # applied to the first block, or to the stage's transition or pool (see geometry)
    kernel_size: int = 3
    expand_ratio: float = 1.0  # MBConv/Fused-MBConv expansion; ConvNeXt/VAN MLP ratio; DenseNet bn_size
    se_ratio: float = 0.0  # squeeze width as a fraction of the block's input channels; 0 = no SE
    activation: Activation = Activation.SILU
    skip: bool = True  # residual connection where input and output shapes match (ResNets: always, projected)
    groups: int = 1  # groups of the bottleneck's kxk conv (ResNeXt's cardinality)
    bottleneck_ratio: float = 0.25  # bottleneck width / out_channels (ResNet 0.25); fire: squeeze width
    pool: Pool = Pool.MAX2  # how a stride-2 plain, fire or inception stage downsamples
    same_padding: bool = True  # False: unpadded ("valid") plain convs, as LeNet-5's
    branches: tuple[int, ...] = ()  # inception: the six branch widths of INCEPTION_BRANCHES
    num_heads: int = 1  # transformer: attention heads, each out_channels / num_heads wide
    patch_size: int = 1  # transformer at stride 1: the side of the patches its embedding cuts (ViT-B/16: 16)
    class_token: bool = False  # transformer: a learned token put first (ViT); the last stage only, with that head
    position_embedding: bool = False  # transformer: a learned embedding added to every token (ViT)
    residual_scale: float = 1.0  # inception_resnet: the residual branch's scale (Inception-ResNet-v2: 0.17, 0.1, 0.2)
    output_activation: bool = True  # inception_resnet: the activation after the addition (off: the last Block8)

    def __post_init__(self) -> None:
        validate_stage(self, "stage")


STAGE_FIELDS = tuple(field.name for field in dataclasses.fields(Stage))
STAGE_DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(Stage)
    if field.default is not dataclasses.MISSING
}


# ---------------------------------------------------------------------------------------------------
# Validation: every check names the field path and the value received


def check_int(path: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(path, f"must be at least {minimum}, got {value}")


def check_float(path: str, value: Any, *, low: float, high: float, high_inclusive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(path, f"must be a number, got {value!r}")
    above = value > high if high_inclusive else value >= high
    if value < low or above:
        bracket = "]" if high_inclusive else ")"
        raise SpecError(path, f"must be in [{low:g}, {high:g}{bracket}, got {value:g}")


def check_enum(path: str, value: Any, enum: type[StrEnum]) -> None:
    if not isinstance(value, enum):
        choices = ", ".join(member.value for member in enum)
        raise SpecError(path, f"must be one of {choices}, got {value!r}")


def check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(path, f"must be true or false, got {value!r}")


def check_widths(path: str, value: Any) -> None:
    if not isinstance(value, tuple):
        raise SpecError(path, f"must be a tuple of widths, got {value!r}")
    for index, width in enumerate(value):
        check_int(f"{path}[{index}]", width, minimum=1)


def validate_stage(stage: Stage, path: str) -> None:
    check_enum(f"{path}.block", stage.block, BlockType)
    check_int(f"{path}.num_blocks", stage.num_blocks, minimum=1)
    check_int(f"{path}.out_channels", stage.out_channels, minimum=1)
    check_int(f"{path}.stride", stage.stride, minimum=1)
    if stage.stride not in (1, 2):
        raise SpecError(f"{path}.stride", f"must be 1 or 2, got {stage.stride}")
    check_int(f"{path}.kernel_size", stage.kernel_size, minimum=1)
    if stage.kernel_size % 2 == 0 or stage.kernel_size > MAX_KERNEL_SIZE:
        raise SpecError(
            f"{path}.kernel_size", f"must be odd and at most {MAX_KERNEL_SIZE}, got {stage.kernel_size}"
        )
    check_float(f"{path}.expand_ratio", stage.expand_ratio, low=0.0, high=16.0)
    if stage.expand_ratio <= 0:
        raise SpecError(f"{path}.expand_ratio", f"must be positive, got {stage.expand_ratio:g}")
    check_float(f"{path}.se_ratio", stage.se_ratio, low=0.0, high=1.0)
    check_enum(f"{path}.activation", stage.activation, Activation)
    check_bool(f"{path}.skip", stage.skip)
    check_int(f"{path}.groups", stage.groups, minimum=1)
    check_float(f"{path}.bottleneck_ratio", stage.bottleneck_ratio, low=0.0, high=MAX_BOTTLENECK_RATIO)
    if stage.bottleneck_ratio <= 0:
        raise SpecError(f"{path}.bottleneck_ratio", f"must be positive, got {stage.bottleneck_ratio:g}")
    check_enum(f"{path}.pool", stage.pool, Pool)
    check_bool(f"{path}.same_padding", stage.same_padding)
    check_widths(f"{path}.branches", stage.branches)
    check_int(f"{path}.num_heads", stage.num_heads, minimum=1)
    check_int(f"{path}.patch_size", stage.patch_size, minimum=1)
    if stage.patch_size > MAX_PATCH_SIZE:
        raise SpecError(f"{path}.patch_size", f"must be at most {MAX_PATCH_SIZE}, got {stage.patch_size}")
    check_bool(f"{path}.class_token", stage.class_token)
    check_bool(f"{path}.position_embedding", stage.position_embedding)
    check_float(f"{path}.residual_scale", stage.residual_scale, low=0.0, high=1.0)
    if stage.residual_scale <= 0:
        raise SpecError(f"{path}.residual_scale", f"must be positive, got {stage.residual_scale:g}")
    check_bool(f"{path}.output_activation", stage.output_activation)
    applicable = APPLICABLE_FIELDS[stage.block]
    for name, default in STAGE_DEFAULTS.items():
        if name in applicable:
            continue
        value = getattr(stage, name)
        if value != default:
            raise SpecError(
                f"{path}.{name}",
                f"does not apply to {stage.block.value} blocks (leave it out), got {value!r}",
            )
    _check_stage_consistency(stage, path)


def _check_stage_consistency(stage: Stage, path: str) -> None:
    """Rules that tie fields together, so that every valid spec builds and has one form."""
    applicable = APPLICABLE_FIELDS[stage.block]
    if "groups" in applicable:
        width = bottleneck_channels(stage.out_channels, stage.bottleneck_ratio)
        if width % stage.groups:
            raise SpecError(f"{path}.groups", f"must divide the bottleneck width {width} (out_channels "
                                              f"{stage.out_channels} x bottleneck_ratio {stage.bottleneck_ratio:g}), "
                                              f"got {stage.groups}")
    if "pool" in applicable and stage.stride == 1 and stage.pool != STAGE_DEFAULTS["pool"]:
        raise SpecError(f"{path}.pool", f"does not apply to a stride-1 stage (leave it out), got {stage.pool.value!r}")
    if not stage.same_padding and stage.kernel_size == 1:
        raise SpecError(f"{path}.same_padding", "does not apply to 1x1 convolutions (leave it out), got False")
    if stage.block in (BlockType.SHUFFLE, BlockType.FIRE) and stage.out_channels < 2:
        raise SpecError(f"{path}.out_channels", f"must be at least 2 for {stage.block.value} blocks, got "
                                                f"{stage.out_channels}")
    if stage.block is BlockType.SHUFFLE and stage.out_channels % 2:
        raise SpecError(f"{path}.out_channels", f"must be even: a shuffle unit concatenates two halves, got "
                                                f"{stage.out_channels}")
    if stage.block is BlockType.INCEPTION:
        _check_inception_branches(stage, path)
    if stage.block is BlockType.TRANSFORMER:
        _check_transformer(stage, path)
    if stage.block in MIXED_LAYOUTS:
        _check_mixed(stage, path)


def _check_mixed(stage: Stage, path: str) -> None:
    """Inception-v3 / Inception-ResNet modules: a width per conv; a reduction is one block at stride 2, the others
    keep the size; the concatenating ones without a pass-through fix their width (the rest, with Arch's input)."""
    layout = MIXED_LAYOUTS[stage.block]
    if len(stage.branches) != layout.convs:
        raise SpecError(f"{path}.branches", f"must list {layout.convs} widths, one per conv of {stage.block.value} "
                                            f"(nasscale.spec.inception), got {list(stage.branches)}")
    if layout.reduction and (stage.stride != 2 or stage.num_blocks != 1):
        raise SpecError(f"{path}.stride" if stage.stride != 2 else f"{path}.num_blocks",
                        f"a {stage.block.value} stage is one reduction block at stride 2, got {stage.num_blocks} "
                        f"at stride {stage.stride}")
    if not layout.reduction and stage.stride != 1:
        raise SpecError(f"{path}.stride", f"must be 1: {stage.block.value} blocks keep the size, got {stage.stride}")
    if stage.block not in PASSTHROUGH_MIXED_BLOCKS and not layout.residual:
        width = concatenated_channels(layout, stage.branches, 0)
        if width != stage.out_channels:
            raise SpecError(f"{path}.out_channels", f"must be the width of the concatenated branches, {width}, got "
                                                    f"{stage.out_channels}")


def _check_transformer(stage: Stage, path: str) -> None:
    if stage.out_channels % stage.num_heads:
        raise SpecError(f"{path}.num_heads", f"must divide out_channels {stage.out_channels} (each head is as wide), "
                                             f"got {stage.num_heads}")
    # A stride-2 stage embeds 2x2 patches, the network a stride-1 stage with patch_size 2 would be: one spec each.
    if stage.stride == 2 and stage.patch_size != 1:
        raise SpecError(f"{path}.patch_size", f"applies at stride 1 only (a stride-2 transformer stage embeds 2x2 "
                                              f"patches), got {stage.patch_size}")
    if stage.stride == 1 and stage.patch_size == 2:
        raise SpecError(f"{path}.patch_size", "2x2 patches are a stride-2 transformer stage: write stride 2 and leave "
                                              "patch_size out, got 2")


def _check_inception_branches(stage: Stage, path: str) -> None:
    if len(stage.branches) != INCEPTION_BRANCHES:
        raise SpecError(f"{path}.branches", f"must list {INCEPTION_BRANCHES} widths (1x1, 3x3 reduce, 3x3, second "
                                            f"reduce, second, pool projection), got {list(stage.branches)}")
    one, _, three, _, second, projection = stage.branches
    if one + three + second + projection != stage.out_channels:
        raise SpecError(f"{path}.out_channels", f"must be the sum of the branch outputs {one} + {three} + {second} "
                                                f"+ {projection} = {one + three + second + projection}, got "
                                                f"{stage.out_channels}")
