"""The architecture spec: frozen dataclasses that describe a CNN precisely enough to build it and to
count its cost without building it.

An ``Arch`` is a stem, a tuple of ``Stage`` and a head. A stage repeats one block type; its first
block (or its opening transition) carries the stride and changes the width. Nothing derivable is
stored: a stage's input width is the previous stage's output width. The derived quantities that both
the builder and the cost model need (expanded width, squeeze width, residual rule, sizes, DenseNet
growth) live in ``nasscale.geometry``, in one place, so the two cannot drift apart; this module
re-exports them.

This module is part of the light core: it imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nasscale.errors import SpecError


class BlockType(StrEnum):
    MBCONV = "mbconv"  # inverted residual: 1x1 expand, kxk depthwise, SE, 1x1 project
    FUSED_MBCONV = "fused_mbconv"  # kxk expand conv, SE, 1x1 project (one kxk conv at expansion 1)
    SEPCONV = "sepconv"  # depthwise-separable: kxk depthwise, SE, 1x1 project
    CONV = "conv"  # one regular kxk convolution (MnasNet's "conv" op)
    CONVNEXT = "convnext"  # kxk depthwise, LayerNorm, MLP, layer scale
    BASIC = "basic"  # ResNet: two kxk convs; shortcut, a 1x1 projection where the shape changes
    BOTTLENECK = "bottleneck"  # ResNet/ResNeXt/RegNet: 1x1 reduce, grouped kxk, SE (RegNetY), 1x1 expand
    SE_BOTTLENECK = "se_bottleneck"  # SE-ResNet: bottleneck, then SE (reduction 16) before the addition
    PREACT_BASIC = "preact_basic"  # ResNetV2: BN and activation before each conv, none after the addition
    PREACT_BOTTLENECK = "preact_bottleneck"
    DEPTHWISE_SEPARABLE = "depthwise_separable"  # MobileNetV1: kxk depthwise, BN, act, 1x1, BN, act
    SHUFFLE = "shuffle"  # ShuffleNetV2 unit: split (or two branches), concatenate, channel shuffle
    DENSE = "dense"  # DenseNet-BC layer: BN-act-1x1-BN-act-kxk, its output concatenated to its input
    INCEPTION = "inception"  # GoogLeNet module: 1x1, 1x1-3x3, 1x1-kxk and pool-1x1 branches concatenated
    FIRE = "fire"  # SqueezeNet: 1x1 squeeze, then 1x1 and kxk expands concatenated
    PLAIN = "plain"  # kxk conv with bias and activation, no norm (VGG, AlexNet, LeNet)
    VAN = "van"  # VAN: BN, large-kernel attention, residual; BN, MLP with a 3x3 depthwise conv, residual


class Activation(StrEnum):
    RELU = "relu"
    RELU6 = "relu6"
    SILU = "silu"
    HARDSWISH = "hardswish"
    GELU = "gelu"


# Names users may write for an activation; "swish" is SiLU under its EfficientNet name.
ACTIVATION_ALIASES = {"swish": Activation.SILU}


class StemType(StrEnum):
    CONV = "conv"  # 3x3 stride-2 conv, BatchNorm, activation (EfficientNet, MobileNet, MnasNet, RegNet)
    PATCHIFY = "patchify"  # 4x4 stride-4 conv with bias, LayerNorm (ConvNeXt)
    RESNET = "resnet"  # 7x7 stride-2 conv, BN, activation, 3x3 stride-2 max pool (ResNet, DenseNet)
    RESNET_PREACT = "resnet_preact"  # the same without BN and activation: the first block pre-activates
    CONV_POOL = "conv_pool"  # 3x3 stride-2 conv, BN, activation, 3x3 stride-2 max pool (ShuffleNetV2)
    GOOGLENET = "googlenet"  # 7x7 stride-2 conv, BN, activation, 3x3 stride-2 ceil-mode max pool
    SQUEEZENET_1_0 = "squeezenet_1_0"  # 7x7 stride-2 unpadded conv with bias, activation, ceil-mode max pool
    SQUEEZENET_1_1 = "squeezenet_1_1"  # the same with a 3x3 conv
    ALEXNET = "alexnet"  # 11x11 stride-4 conv (padding 2) with bias, activation, 3x3 stride-2 max pool
    OVERLAPPING_PATCHIFY = "overlapping_patchify"  # 7x7 stride-4 conv with bias, BN (VAN)
    NONE = "none"  # no stem: the first stage takes the image (VGG, LeNet); stem_channels must be 0


class HeadType(StrEnum):
    CONV = "conv"  # 1x1 conv to head_channels, BN, activation, global pool, classifier
    NORM = "norm"  # global pool, LayerNorm, classifier (ConvNeXt); head_channels must be 0
    POOL = "pool"  # average pool to head_pool_size x head_pool_size, classifier (ResNet, VGG)
    PREACT = "preact"  # BN, activation, global pool, classifier (pre-activation ResNet, DenseNet)
    CONV_CLASSIFIER = "conv_classifier"  # dropout, 1x1 conv with bias to the classes, activation, pool (SqueezeNet)


# "Classifier" above: the hidden linear layers of classifier_hidden (each with the activation and dropout),
# dropout when there are none, and the linear layer to the classes.


class Pool(StrEnum):
    """How a pooled stage downsamples (plain stages at their end, fire and inception stages at their start)."""

    MAX2 = "max2"  # 2x2 max pool, stride 2 (VGG)
    MAX3 = "max3"  # 3x3 max pool, stride 2, overlapping (AlexNet)
    MAX2_CEIL = "max2_ceil"  # as max2 in ceil mode (GoogLeNet's last pool)
    MAX3_CEIL = "max3_ceil"  # as max3 in ceil mode (SqueezeNet, GoogLeNet)
    AVG2 = "avg2"  # 2x2 average pool, stride 2 (LeNet-5)


class SqueezeExciteStyle(StrEnum):
    """How the squeeze-excite of mbconv, fused_mbconv, sepconv and bottleneck blocks is made."""

    EFFICIENTNET = "efficientnet"  # squeeze int(se_ratio x block input width), the block's activation, sigmoid
    MOBILENET_V3 = "mobilenet_v3"  # squeeze se_ratio x the gated width made divisible by 8, ReLU, hard sigmoid


@dataclass(frozen=True, slots=True)
class PoolLayout:
    kernel_size: int
    stride: int = 2
    padding: int = 0
    ceil_mode: bool = False
    average: bool = False


POOL_LAYOUTS: dict[Pool, PoolLayout] = {
    Pool.MAX2: PoolLayout(2),
    Pool.MAX3: PoolLayout(3),
    Pool.MAX2_CEIL: PoolLayout(2, ceil_mode=True),
    Pool.MAX3_CEIL: PoolLayout(3, ceil_mode=True),
    Pool.AVG2: PoolLayout(2, average=True),
}
PADDED_MAX_POOL = PoolLayout(3, padding=1)  # ResNet's stem pool
DENSE_TRANSITION_POOL = PoolLayout(2, average=True)


class StemNorm(StrEnum):
    NONE = "none"
    BATCH = "batch"
    LAYER = "layer"


@dataclass(frozen=True, slots=True)
class StemLayout:
    """One stem: a conv, an optional norm and activation, an optional pool."""

    kernel_size: int
    stride: int
    padding: int
    bias: bool
    norm: StemNorm
    activation: bool
    pool: PoolLayout | None = None


PATCHIFY_SIZE = 4
STEM_LAYOUTS: dict[StemType, StemLayout] = {
    StemType.CONV: StemLayout(3, 2, 1, False, StemNorm.BATCH, True),
    StemType.PATCHIFY: StemLayout(PATCHIFY_SIZE, PATCHIFY_SIZE, 0, True, StemNorm.LAYER, False),
    StemType.RESNET: StemLayout(7, 2, 3, False, StemNorm.BATCH, True, PADDED_MAX_POOL),
    StemType.RESNET_PREACT: StemLayout(7, 2, 3, False, StemNorm.NONE, False, PADDED_MAX_POOL),
    StemType.CONV_POOL: StemLayout(3, 2, 1, False, StemNorm.BATCH, True, PADDED_MAX_POOL),
    StemType.GOOGLENET: StemLayout(7, 2, 3, False, StemNorm.BATCH, True, POOL_LAYOUTS[Pool.MAX3_CEIL]),
    StemType.SQUEEZENET_1_0: StemLayout(7, 2, 0, True, StemNorm.NONE, True, POOL_LAYOUTS[Pool.MAX3_CEIL]),
    StemType.SQUEEZENET_1_1: StemLayout(3, 2, 0, True, StemNorm.NONE, True, POOL_LAYOUTS[Pool.MAX3_CEIL]),
    StemType.ALEXNET: StemLayout(11, 4, 2, True, StemNorm.NONE, True, POOL_LAYOUTS[Pool.MAX3]),
    StemType.OVERLAPPING_PATCHIFY: StemLayout(7, 4, 3, True, StemNorm.BATCH, False),
}

_CORE = frozenset({"kernel_size", "activation"})
_BOTTLENECK = _CORE | {"bottleneck_ratio", "groups", "skip"}

# Which optional stage fields mean something for each block type. A field outside this table must
# keep its default, so that one network has exactly one spec (and one arch_id).
APPLICABLE_FIELDS: dict[BlockType, frozenset[str]] = {
    BlockType.MBCONV: frozenset({"kernel_size", "expand_ratio", "se_ratio", "activation", "skip"}),
    BlockType.FUSED_MBCONV: frozenset({"kernel_size", "expand_ratio", "se_ratio", "activation", "skip"}),
    BlockType.SEPCONV: frozenset({"kernel_size", "se_ratio", "activation", "skip"}),
    BlockType.CONV: frozenset({"kernel_size", "activation", "skip"}),
    BlockType.CONVNEXT: frozenset({"kernel_size", "expand_ratio", "activation", "skip"}),
    BlockType.BASIC: _CORE | {"skip"},
    BlockType.BOTTLENECK: _BOTTLENECK | {"se_ratio"},
    BlockType.SE_BOTTLENECK: _BOTTLENECK,
    BlockType.PREACT_BASIC: _CORE | {"skip"},
    BlockType.PREACT_BOTTLENECK: _BOTTLENECK,
    BlockType.DEPTHWISE_SEPARABLE: _CORE,
    BlockType.SHUFFLE: _CORE,
    BlockType.DENSE: _CORE | {"expand_ratio"},  # expand_ratio: DenseNet's bn_size, the 1x1 width / growth
    BlockType.INCEPTION: _CORE | {"pool", "branches"},  # kernel_size: of the second reduced branch
    BlockType.FIRE: _CORE | {"bottleneck_ratio", "pool"},  # bottleneck_ratio: squeeze width / out_channels
    BlockType.PLAIN: _CORE | {"pool", "same_padding"},
    BlockType.VAN: frozenset({"expand_ratio", "activation"}),  # expand_ratio: the MLP ratio
}

# The activation a block type gets when a spec file does not name one.
DEFAULT_ACTIVATION: dict[BlockType, Activation] = {
    BlockType.MBCONV: Activation.SILU,
    BlockType.FUSED_MBCONV: Activation.SILU,
    BlockType.SEPCONV: Activation.SILU,
    BlockType.CONV: Activation.SILU,
    BlockType.CONVNEXT: Activation.GELU,
    BlockType.VAN: Activation.GELU,
} | {block: Activation.RELU for block in (
    BlockType.BASIC, BlockType.BOTTLENECK, BlockType.SE_BOTTLENECK, BlockType.PREACT_BASIC,
    BlockType.PREACT_BOTTLENECK, BlockType.DEPTHWISE_SEPARABLE, BlockType.SHUFFLE, BlockType.DENSE,
    BlockType.INCEPTION, BlockType.FIRE, BlockType.PLAIN)}

# Heads with a 1x1 conv of head_channels; every other head has head_channels 0.
HEADS_WITH_CHANNELS = frozenset({HeadType.CONV})
# Heads that end in linear layers, so that classifier_hidden means something.
HEADS_WITH_LINEAR = frozenset({HeadType.CONV, HeadType.NORM, HeadType.POOL, HeadType.PREACT})
# Blocks whose squeeze-excite follows Arch.se_style (se_bottleneck's is Hu et al.'s, fixed).
SE_STYLE_BLOCKS = frozenset({BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV, BlockType.BOTTLENECK})

MAX_KERNEL_SIZE = 11
MAX_BOTTLENECK_RATIO = 4.0
CONVNEXT_LAYER_SCALE_INIT = 1e-6
VAN_LAYER_SCALE_INIT = 1e-2
SE_BOTTLENECK_REDUCTION = 16  # Hu et al.'s r
INCEPTION_BRANCHES = 6  # 1x1, 3x3 reduce, 3x3, second reduce, second (kernel_size), pool projection


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

    def __post_init__(self) -> None:
        validate_stage(self, "stage")


@dataclass(frozen=True, slots=True, kw_only=True)
class Arch:
    stages: tuple[Stage, ...]
    stem_channels: int  # 0 with no stem
    head_channels: int  # 0 for heads without a conv
    resolution: int
    in_channels: int = 3
    num_classes: int = 1000
    stem: StemType = StemType.CONV
    head: HeadType = HeadType.CONV
    activation: Activation = Activation.SILU  # of the stem and the head
    dropout: float = 0.2
    drop_path_rate: float = 0.0
    se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET
    classifier_hidden: tuple[int, ...] = ()  # hidden linear widths before the last (MobileNetV3, VGG)
    head_pool_size: int = 1  # pool head: the pooled map is head_pool_size^2 positions, flattened (VGG: 7)

    def __post_init__(self) -> None:
        validate_arch(self)

    @property
    def arch_id(self) -> str:
        return arch_id(self)

    def replace(self, **changes: Any) -> Arch:
        return dataclasses.replace(self, **changes)


STAGE_FIELDS = tuple(field.name for field in dataclasses.fields(Stage))
ARCH_FIELDS = tuple(field.name for field in dataclasses.fields(Arch))
STAGE_DEFAULTS = {
    field.name: field.default
    for field in dataclasses.fields(Stage)
    if field.default is not dataclasses.MISSING
}

# The geometry reads the dataclasses above; its names are part of this module's interface.
from nasscale.geometry import (  # noqa: E402
    BlockPlacement,
    StagePlacement,
    bottleneck_channels,
    conv_output_size,
    convnext_needs_transition,
    dense_growth,
    downsamples_in_block,
    expanded_channels,
    final_feature_size,
    first_stage_channels,
    has_residual,
    iter_blocks,
    iter_stages,
    last_channels,
    pool_output_size,
    same_padding,
    squeeze_channels,
    stage_blocks,
    stage_output_size,
    stage_sizes,
    stem_conv_size,
    stem_output_size,
    stem_stride,
    total_blocks,
)

__all__ = [
    "ACTIVATION_ALIASES", "APPLICABLE_FIELDS", "ARCH_FIELDS", "DEFAULT_ACTIVATION", "POOL_LAYOUTS", "STAGE_DEFAULTS",
    "STAGE_FIELDS", "STEM_LAYOUTS", "Activation", "Arch", "BlockPlacement", "BlockType", "HeadType", "Pool",
    "SqueezeExciteStyle", "Stage", "StagePlacement", "StemType", "arch_id", "bottleneck_channels", "conv_output_size",
    "convnext_needs_transition", "dense_growth", "downsamples_in_block", "expanded_channels", "final_feature_size",
    "first_stage_channels", "from_dict", "has_residual", "iter_blocks", "iter_stages", "last_channels",
    "pool_output_size", "same_padding", "squeeze_channels", "stage_blocks", "stage_output_size", "stage_sizes",
    "stem_conv_size", "stem_output_size", "stem_stride", "summary", "to_dict", "total_blocks",
]


# ---------------------------------------------------------------------------------------------------
# Validation: every check names the field path and the value received


def _check_int(path: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer, got {value!r}")
    if value < minimum:
        raise SpecError(path, f"must be at least {minimum}, got {value}")


def _check_float(path: str, value: Any, *, low: float, high: float, high_inclusive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(path, f"must be a number, got {value!r}")
    above = value > high if high_inclusive else value >= high
    if value < low or above:
        bracket = "]" if high_inclusive else ")"
        raise SpecError(path, f"must be in [{low:g}, {high:g}{bracket}, got {value:g}")


def _check_enum(path: str, value: Any, enum: type[StrEnum]) -> None:
    if not isinstance(value, enum):
        choices = ", ".join(member.value for member in enum)
        raise SpecError(path, f"must be one of {choices}, got {value!r}")


def _check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(path, f"must be true or false, got {value!r}")


def _check_widths(path: str, value: Any) -> None:
    if not isinstance(value, tuple):
        raise SpecError(path, f"must be a tuple of widths, got {value!r}")
    for index, width in enumerate(value):
        _check_int(f"{path}[{index}]", width, minimum=1)


def validate_stage(stage: Stage, path: str) -> None:
    _check_enum(f"{path}.block", stage.block, BlockType)
    _check_int(f"{path}.num_blocks", stage.num_blocks, minimum=1)
    _check_int(f"{path}.out_channels", stage.out_channels, minimum=1)
    _check_int(f"{path}.stride", stage.stride, minimum=1)
    if stage.stride not in (1, 2):
        raise SpecError(f"{path}.stride", f"must be 1 or 2, got {stage.stride}")
    _check_int(f"{path}.kernel_size", stage.kernel_size, minimum=1)
    if stage.kernel_size % 2 == 0 or stage.kernel_size > MAX_KERNEL_SIZE:
        raise SpecError(
            f"{path}.kernel_size", f"must be odd and at most {MAX_KERNEL_SIZE}, got {stage.kernel_size}"
        )
    _check_float(f"{path}.expand_ratio", stage.expand_ratio, low=0.0, high=16.0)
    if stage.expand_ratio <= 0:
        raise SpecError(f"{path}.expand_ratio", f"must be positive, got {stage.expand_ratio:g}")
    _check_float(f"{path}.se_ratio", stage.se_ratio, low=0.0, high=1.0)
    _check_enum(f"{path}.activation", stage.activation, Activation)
    _check_bool(f"{path}.skip", stage.skip)
    _check_int(f"{path}.groups", stage.groups, minimum=1)
    _check_float(f"{path}.bottleneck_ratio", stage.bottleneck_ratio, low=0.0, high=MAX_BOTTLENECK_RATIO)
    if stage.bottleneck_ratio <= 0:
        raise SpecError(f"{path}.bottleneck_ratio", f"must be positive, got {stage.bottleneck_ratio:g}")
    _check_enum(f"{path}.pool", stage.pool, Pool)
    _check_bool(f"{path}.same_padding", stage.same_padding)
    _check_widths(f"{path}.branches", stage.branches)
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


def _check_inception_branches(stage: Stage, path: str) -> None:
    if len(stage.branches) != INCEPTION_BRANCHES:
        raise SpecError(f"{path}.branches", f"must list {INCEPTION_BRANCHES} widths (1x1, 3x3 reduce, 3x3, second "
                                            f"reduce, second, pool projection), got {list(stage.branches)}")
    one, _, three, _, second, projection = stage.branches
    if one + three + second + projection != stage.out_channels:
        raise SpecError(f"{path}.out_channels", f"must be the sum of the branch outputs {one} + {three} + {second} "
                                                f"+ {projection} = {one + three + second + projection}, got "
                                                f"{stage.out_channels}")


def validate_arch(arch: Arch) -> None:
    if not isinstance(arch.stages, tuple) or not arch.stages:
        raise SpecError("stages", f"must be a non-empty tuple of Stage, got {arch.stages!r}")
    for index, stage in enumerate(arch.stages):
        if not isinstance(stage, Stage):
            raise SpecError(f"stages[{index}]", f"must be a Stage, got {type(stage).__name__}")
    _check_enum("stem", arch.stem, StemType)
    if arch.stem is StemType.NONE:
        _check_zero("stem_channels", arch.stem_channels, "with no stem")
    else:
        _check_int("stem_channels", arch.stem_channels, minimum=1)
    _check_int("resolution", arch.resolution, minimum=1)
    _check_int("in_channels", arch.in_channels, minimum=1)
    _check_int("num_classes", arch.num_classes, minimum=1)
    _check_enum("head", arch.head, HeadType)
    _check_enum("activation", arch.activation, Activation)
    if arch.head in HEADS_WITH_CHANNELS:
        _check_int("head_channels", arch.head_channels, minimum=1)
    else:
        _check_zero("head_channels", arch.head_channels, f"with a {arch.head.value} head")
    _check_float("dropout", arch.dropout, low=0.0, high=1.0, high_inclusive=False)
    _check_float("drop_path_rate", arch.drop_path_rate, low=0.0, high=1.0, high_inclusive=False)
    _check_head_options(arch)
    _check_se_style(arch)
    _check_dense_widths(arch)
    _check_spatial_sizes(arch)


def _check_zero(path: str, value: Any, reason: str) -> None:
    if value != 0 or isinstance(value, bool):
        raise SpecError(path, f"must be 0 {reason}, got {value!r}")


def _check_head_options(arch: Arch) -> None:
    _check_widths("classifier_hidden", arch.classifier_hidden)
    if arch.classifier_hidden and arch.head not in HEADS_WITH_LINEAR:
        raise SpecError("classifier_hidden", f"does not apply to a {arch.head.value} head (leave it out), got "
                                             f"{list(arch.classifier_hidden)}")
    _check_int("head_pool_size", arch.head_pool_size, minimum=1)
    if arch.head_pool_size != 1 and arch.head is not HeadType.POOL:
        raise SpecError("head_pool_size", f"must be 1 with a {arch.head.value} head, got {arch.head_pool_size}")


def _check_se_style(arch: Arch) -> None:
    _check_enum("se_style", arch.se_style, SqueezeExciteStyle)
    uses_style = any(stage.block in SE_STYLE_BLOCKS and stage.se_ratio > 0 for stage in arch.stages)
    if arch.se_style is not SqueezeExciteStyle.EFFICIENTNET and not uses_style:
        raise SpecError("se_style", f"no stage has squeeze-excite (leave it out), got {arch.se_style.value!r}")


def _check_dense_widths(arch: Arch) -> None:
    for placement in iter_stages(arch):
        stage = placement.stage
        if stage.block is not BlockType.DENSE:
            continue
        start = placement.blocks_in_channels
        grown = stage.out_channels - start
        if grown <= 0 or grown % stage.num_blocks:
            raise SpecError(f"stages[{placement.index}].out_channels",
                            f"must be {start} (the dense stage's input) plus num_blocks ({stage.num_blocks}) "
                            f"times a growth rate, got {stage.out_channels}")


def _check_spatial_sizes(arch: Arch) -> None:
    if stem_conv_size(arch) < 1 or stem_output_size(arch) < 1:
        raise SpecError("resolution", f"{arch.resolution} is too small for the {arch.stem.value} stem")
    for placement in iter_stages(arch):
        if min(stage_sizes(placement.stage, placement.in_channels, placement.input_size)) < 1:
            raise SpecError(
                "resolution",
                f"{arch.resolution} is too small: stages[{placement.index}] gets a "
                f"{placement.input_size}x{placement.input_size} input",
            )


# ---------------------------------------------------------------------------------------------------
# Serialisation: plain dicts, canonical JSON, arch_id


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    return list(value) if isinstance(value, tuple) else value


# Fields that came with the classic families are written only when they differ from their default, so that
# the MBConv-era specs, their files and their arch_ids stay exactly as they were before those fields existed.
OPTIONAL_STAGE_FIELDS = frozenset({"groups", "bottleneck_ratio", "pool", "same_padding", "branches"})
OPTIONAL_ARCH_FIELDS = frozenset({"se_style", "classifier_hidden", "head_pool_size"})
ARCH_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Arch)
                 if field.default is not dataclasses.MISSING}


def stage_to_dict(stage: Stage) -> dict[str, Any]:
    return {name: _plain(getattr(stage, name)) for name in STAGE_FIELDS
            if name not in OPTIONAL_STAGE_FIELDS or getattr(stage, name) != STAGE_DEFAULTS[name]}


def to_dict(arch: Arch) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in ARCH_FIELDS:
        value = getattr(arch, name)
        if name in OPTIONAL_ARCH_FIELDS and value == ARCH_DEFAULTS[name]:
            continue
        data[name] = [stage_to_dict(stage) for stage in value] if name == "stages" else _plain(value)
    return data


STAGE_FLOAT_FIELDS = ("expand_ratio", "se_ratio", "bottleneck_ratio")


def canonical_json(arch: Arch) -> str:
    data = to_dict(arch)
    # Floats print identically whether they came in as 6 or 6.0.
    for stage in data["stages"]:
        for name in STAGE_FLOAT_FIELDS:
            if name in stage:
                stage[name] = float(stage[name])
    data["dropout"] = float(data["dropout"])
    data["drop_path_rate"] = float(data["drop_path_rate"])
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def arch_id(arch: Arch) -> str:
    """A stable 12-hex-digit id: the same network gives the same id in every process."""
    return hashlib.sha256(canonical_json(arch).encode()).hexdigest()[:12]


def _parse_enum(path: str, value: Any, enum: type[StrEnum], aliases: Mapping[str, Any] = {}) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        if key in aliases:
            return aliases[key]
        try:
            return enum(key)
        except ValueError:
            pass
    choices = ", ".join(member.value for member in enum)
    raise SpecError(path, f"must be one of {choices}, got {value!r}")


def _parse_widths(path: str, value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise SpecError(path, f"must be a list of widths, got {value!r}")
    return tuple(value)


def _check_keys(path: str, data: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(path, f"must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise SpecError(
                f"{path}.{key}" if path else str(key),
                f"unknown key; valid keys are {', '.join(allowed)}",
            )
    for key in required:
        if key not in data:
            raise SpecError(f"{path}.{key}" if path else key, "is required")


STAGE_REQUIRED = ("block", "num_blocks", "out_channels", "stride")
ARCH_REQUIRED = ("stages", "resolution")


def stage_from_dict(data: Mapping[str, Any], path: str = "stage") -> Stage:
    _check_keys(path, data, STAGE_FIELDS, STAGE_REQUIRED)
    values = dict(data)
    block = _parse_enum(f"{path}.block", values["block"], BlockType)
    values["block"] = block
    values["activation"] = _parse_enum(
        f"{path}.activation", values.get("activation", DEFAULT_ACTIVATION[block].value), Activation,
        ACTIVATION_ALIASES,
    )
    if "pool" in values:
        values["pool"] = _parse_enum(f"{path}.pool", values["pool"], Pool)
    if "branches" in values:
        values["branches"] = _parse_widths(f"{path}.branches", values["branches"])
    try:
        return Stage(**values)
    except SpecError as error:
        # Stage validates itself under the generic path "stage"; re-anchor at the real one.
        raise SpecError(path + error.path.removeprefix("stage"), error.message) from None


def from_dict(data: Mapping[str, Any], *, source: str | None = None) -> Arch:
    """Parse and validate a plain dict (from YAML or JSON); errors name the field path."""
    try:
        return _arch_from_dict(data)
    except SpecError as error:
        raise error.with_source(source) if source else error from None


def _arch_from_dict(data: Mapping[str, Any]) -> Arch:
    _check_keys("", data, ARCH_FIELDS, ARCH_REQUIRED)
    values = dict(data)
    stages = values["stages"]
    if not isinstance(stages, list | tuple) or not stages:
        raise SpecError("stages", f"must be a non-empty list of stages, got {stages!r}")
    values["stages"] = tuple(stage_from_dict(stage, f"stages[{index}]") for index, stage in enumerate(stages))
    for name, enum in (("stem", StemType), ("head", HeadType), ("se_style", SqueezeExciteStyle)):
        if name in values:
            values[name] = _parse_enum(name, values[name], enum)
    if "activation" in values:
        values["activation"] = _parse_enum("activation", values["activation"], Activation, ACTIVATION_ALIASES)
    if "classifier_hidden" in values:
        values["classifier_hidden"] = _parse_widths("classifier_hidden", values["classifier_hidden"])
    if values.get("stem") is StemType.NONE:
        values.setdefault("stem_channels", 0)
    elif "stem_channels" not in values:
        raise SpecError("stem_channels", "is required")
    if values.get("head", HeadType.CONV) not in HEADS_WITH_CHANNELS:
        values.setdefault("head_channels", 0)
    elif "head_channels" not in values:
        raise SpecError("head_channels", "is required with a conv head")
    return Arch(**values)


def to_json(arch: Arch) -> str:
    return json.dumps(to_dict(arch), indent=2)


def from_json(text: str, *, source: str | None = None) -> Arch:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError("", f"not valid JSON: {error}", source=source) from None
    return from_dict(data, source=source)


def to_yaml(arch: Arch) -> str:
    import yaml

    return yaml.safe_dump(to_dict(arch), sort_keys=False)


def from_yaml(text: str, *, source: str | None = None) -> Arch:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0] if str(error) else "parse error"
        raise SpecError("", f"not valid YAML: {first_line}", source=source) from None
    return from_dict(data, source=source)


def load_arch_file(path: str) -> Arch:
    """Read an architecture from a .json/.yaml file. A file written by ``nasscale sample --json`` or
    ``export`` may wrap it as ``{"arch": {...}, ...}``; that wrapper is accepted too."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise SpecError("", "no such architecture file", source=str(path))
    text = file.read_text()
    import yaml  # a superset of JSON, so one parser serves both

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError("", f"not valid YAML or JSON: {str(error).splitlines()[0]}", source=str(path)) from None
    if isinstance(data, Mapping) and "arch" in data and "stages" not in data:
        data = data["arch"]
    return from_dict(data, source=str(path))


# ---------------------------------------------------------------------------------------------------
# Display


def stage_summary(stage: Stage) -> str:
    """A compact one-line form, e.g. ``mbconv e6 k5 se0.25 40x2 s2`` or ``bottleneck k3 b0.5 g32 256x3 s1``."""
    parts = [stage.block.value]
    applicable = APPLICABLE_FIELDS[stage.block]
    if "expand_ratio" in applicable:
        parts.append(f"e{stage.expand_ratio:g}")
    if "kernel_size" in applicable:
        parts.append(f"k{stage.kernel_size}")
    if "bottleneck_ratio" in applicable:
        parts.append(f"b{stage.bottleneck_ratio:g}")
    if stage.groups > 1:
        parts.append(f"g{stage.groups}")
    if "se_ratio" in applicable and stage.se_ratio > 0:
        parts.append(f"se{stage.se_ratio:g}")
    if stage.branches:
        parts.append("branches " + "-".join(map(str, stage.branches)))
    if not stage.same_padding:
        parts.append("valid")
    if not stage.skip:
        parts.append("noskip")
    parts.append(f"{stage.out_channels}x{stage.num_blocks}")
    parts.append(f"s{stage.stride}" + (f" {stage.pool.value}" if "pool" in applicable and stage.stride == 2 else ""))
    return " ".join(parts)


def summary(arch: Arch) -> str:
    stages = " | ".join(stage_summary(stage) for stage in arch.stages)
    head = f"head {arch.head_channels}" if arch.head in HEADS_WITH_CHANNELS else f"head {arch.head.value}"
    if arch.classifier_hidden:
        head += " mlp " + "-".join(map(str, arch.classifier_hidden))
    stem = "no stem" if arch.stem is StemType.NONE else f"{arch.stem.value} {arch.stem_channels}"
    return f"{stem} | {stages} | {head} @{arch.resolution}"
