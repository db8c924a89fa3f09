"""``Arch``: a stem, a tuple of ``Stage`` and a head, frozen and validated on construction; where each stage
and block sits in it (``StagePlacement``, ``BlockPlacement``, ``iter_stages``, ``iter_blocks``, the stem and
final sizes); and its canonical dict form with the stable ``arch_id`` (a hash of canonical JSON).

Nothing derivable is stored: a stage's input width is the previous stage's output width. The placement lives
here, beside the dataclass, because validating an ``Arch`` walks it (spatial sizes, DenseNet widths).
Light core: no torch, no numpy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from nasscale.errors import SpecError
from nasscale.spec.channels import (
    bottleneck_channels,
    conv_output_size,
    expanded_channels,
    pool_output_size,
    squeeze_channels,
)
from nasscale.spec.geometry import (
    CLOSING_POOL_BLOCKS,
    block_padding,
    downsamples_in_block,
    has_opening_layer,
    opening_output,
    stage_output_size,
    stage_sizes,
)
from nasscale.spec.inception import (
    PASSTHROUGH_MIXED_BLOCKS,
    RESIDUAL_MIXED_BLOCKS,
    inception_stem_layers,
    inception_stem_output_size,
    mixed_output_channels,
)
from nasscale.spec.norm import DEFAULT_NORM, NORM_FLOAT_FIELDS, Norm, norm_to_dict
from nasscale.spec.stage import (
    STAGE_DEFAULTS,
    STAGE_FIELDS,
    Stage,
    check_enum,
    check_float,
    check_int,
    check_widths,
)
from nasscale.spec.vocabulary import (
    HEADS_WITH_CHANNELS,
    HEADS_WITH_LINEAR,
    SE_STYLE_BLOCKS,
    STEM_LAYOUTS,
    Activation,
    BlockType,
    HeadType,
    SqueezeExciteStyle,
    StemType,
)


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
    norm: Norm = DEFAULT_NORM  # the family's BatchNorm/LayerNorm settings; scaling and sampling keep them

    def __post_init__(self) -> None:
        validate_arch(self)

    @property
    def arch_id(self) -> str:
        return arch_id(self)

    def replace(self, **changes: Any) -> Arch:
        return dataclasses.replace(self, **changes)
ARCH_FIELDS = tuple(field.name for field in dataclasses.fields(Arch))


def validate_arch(arch: Arch) -> None:
    if not isinstance(arch.stages, tuple) or not arch.stages:
        raise SpecError("stages", f"must be a non-empty tuple of Stage, got {arch.stages!r}")
    for index, stage in enumerate(arch.stages):
        if not isinstance(stage, Stage):
            raise SpecError(f"stages[{index}]", f"must be a Stage, got {type(stage).__name__}")
    check_enum("stem", arch.stem, StemType)
    if arch.stem is StemType.NONE:
        _check_zero("stem_channels", arch.stem_channels, "with no stem")
    else:
        check_int("stem_channels", arch.stem_channels, minimum=1)
    check_int("resolution", arch.resolution, minimum=1)
    check_int("in_channels", arch.in_channels, minimum=1)
    check_int("num_classes", arch.num_classes, minimum=1)
    check_enum("head", arch.head, HeadType)
    check_enum("activation", arch.activation, Activation)
    if arch.head in HEADS_WITH_CHANNELS:
        check_int("head_channels", arch.head_channels, minimum=1)
    else:
        _check_zero("head_channels", arch.head_channels, f"with a {arch.head.value} head")
    check_float("dropout", arch.dropout, low=0.0, high=1.0, high_inclusive=False)
    check_float("drop_path_rate", arch.drop_path_rate, low=0.0, high=1.0, high_inclusive=False)
    _check_head_options(arch)
    _check_class_token(arch)
    if not isinstance(arch.norm, Norm):
        raise SpecError("norm", f"must be a Norm, got {type(arch.norm).__name__}")
    _check_se_style(arch)
    _check_dense_widths(arch)
    _check_mixed_widths(arch)
    _check_spatial_sizes(arch)


def _check_zero(path: str, value: Any, reason: str) -> None:
    if value != 0 or isinstance(value, bool):
        raise SpecError(path, f"must be 0 {reason}, got {value!r}")


def _check_head_options(arch: Arch) -> None:
    check_widths("classifier_hidden", arch.classifier_hidden)
    if arch.classifier_hidden and arch.head not in HEADS_WITH_LINEAR:
        raise SpecError("classifier_hidden", f"does not apply to a {arch.head.value} head (leave it out), got "
                                             f"{list(arch.classifier_hidden)}")
    check_int("head_pool_size", arch.head_pool_size, minimum=1)
    if arch.head_pool_size != 1 and arch.head is not HeadType.POOL:
        raise SpecError("head_pool_size", f"must be 1 with a {arch.head.value} head, got {arch.head_pool_size}")


def _check_class_token(arch: Arch) -> None:
    """A class token is the last stage's, read by the class_token head: the stage hands the head its tokens."""
    for index, stage in enumerate(arch.stages[:-1]):
        if stage.class_token:
            raise SpecError(f"stages[{index}].class_token", "only the last stage may have a class token (the "
                                                            "class_token head reads it), got True")
    last = arch.stages[-1]
    if last.class_token and arch.head is not HeadType.CLASS_TOKEN:
        raise SpecError("head", f"must be class_token: the last stage has a class token, got {arch.head.value!r}")
    if arch.head is HeadType.CLASS_TOKEN and not last.class_token:
        raise SpecError("head", f"class_token reads the last stage's class token; stages[{len(arch.stages) - 1}] "
                                f"({last.block.value}) has none (a transformer stage with class_token: true)")


def _check_se_style(arch: Arch) -> None:
    check_enum("se_style", arch.se_style, SqueezeExciteStyle)
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


def _check_mixed_widths(arch: Arch) -> None:
    """Inception modules whose width depends on their input's: a residual one keeps it, a reduction adds it."""
    for placement in iter_stages(arch):
        stage = placement.stage
        if stage.block not in RESIDUAL_MIXED_BLOCKS and stage.block not in PASSTHROUGH_MIXED_BLOCKS:
            continue
        width = mixed_output_channels(stage.block, stage.branches, placement.in_channels)
        if width != stage.out_channels:
            how = "its input's width (it adds its input back)" if stage.block in RESIDUAL_MIXED_BLOCKS else \
                f"its branches' plus its input's ({placement.in_channels}), which passes through its max pool"
            raise SpecError(f"stages[{placement.index}].out_channels", f"must be {width}, {how}, got "
                                                                       f"{stage.out_channels}")


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


# Fields that came with the classic families (and the norm settings, later still) are written only when they differ
# from their default, so that the MBConv-era specs, their files and their arch_ids stay exactly as they were before
# those fields existed.
OPTIONAL_STAGE_FIELDS = frozenset({"groups", "bottleneck_ratio", "pool", "same_padding", "branches", "num_heads",
                                   "patch_size", "class_token", "position_embedding", "residual_scale",
                                   "output_activation"})
OPTIONAL_ARCH_FIELDS = frozenset({"se_style", "classifier_hidden", "head_pool_size", "norm"})
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
        if name == "stages":
            data[name] = [stage_to_dict(stage) for stage in value]
        elif name == "norm":
            data[name] = norm_to_dict(value)
        else:
            data[name] = _plain(value)
    return data


STAGE_FLOAT_FIELDS = ("expand_ratio", "se_ratio", "bottleneck_ratio", "residual_scale")


def canonical_json(arch: Arch) -> str:
    data = to_dict(arch)
    # Floats print identically whether they came in as 6 or 6.0.
    for stage in data["stages"]:
        for name in STAGE_FLOAT_FIELDS:
            if name in stage:
                stage[name] = float(stage[name])
    data["dropout"] = float(data["dropout"])
    data["drop_path_rate"] = float(data["drop_path_rate"])
    for name in NORM_FLOAT_FIELDS:
        if name in data.get("norm", {}):
            data["norm"][name] = float(data["norm"][name])
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def arch_id(arch: Arch) -> str:
    """A stable 12-hex-digit id: the same network gives the same id in every process."""
    return hashlib.sha256(canonical_json(arch).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------
# Placement: where each stage and block sits, with its input width and size


# Every stem but StemType.NONE and the multi-layer StemType.INCEPTION has a layout, so STEM_LAYOUTS.get(stem) is None
# only for those two (a dict lookup: in Python 3.11, reading an enum member such as StemType.NONE is several times
# slower, so the common stems never read one).
def stem_conv_size(arch: Arch) -> int:
    """The size after the stem's (first) conv."""
    layout = STEM_LAYOUTS.get(arch.stem)
    if layout is None:
        return inception_stem_layers(arch.resolution, arch.stem_channels)[0][2] if arch.stem is StemType.INCEPTION \
            else arch.resolution
    return conv_output_size(arch.resolution, layout.kernel_size, layout.stride, layout.padding)


def stem_output_size(arch: Arch) -> int:
    layout = STEM_LAYOUTS.get(arch.stem)
    if layout is None:
        return inception_stem_output_size(arch.resolution) if arch.stem is StemType.INCEPTION else arch.resolution
    size = conv_output_size(arch.resolution, layout.kernel_size, layout.stride, layout.padding)
    return size if layout.pool is None else pool_output_size(size, layout.pool)


def stem_stride(stem: StemType) -> int:
    """How much the stem downsamples (for even sizes)."""
    if stem is StemType.NONE:
        return 1
    if stem is StemType.INCEPTION:
        return 8  # a stride-2 conv and two stride-2 pools
    layout = STEM_LAYOUTS[stem]
    return layout.stride * (layout.pool.stride if layout.pool else 1)


def first_stage_channels(arch: Arch) -> int:
    return arch.stem_channels if arch.stem_channels else arch.in_channels  # stem_channels is 0 exactly with no stem


class StagePlacement(NamedTuple):
    """One stage with its input width and size, as the builder and the cost model place it.

    NamedTuples rather than frozen dataclasses, here and for BlockPlacement: cost() creates one per stage and
    block inside search loops, and a frozen dataclass's __init__ (object.__setattr__ per field) is several
    times slower."""

    index: int  # type: ignore[assignment]  # a field, shadowing tuple.index as NamedTuple allows
    stage: Stage
    in_channels: int
    input_size: int  # spatial size (square) of the stage's input
    first_block_index: int  # over the whole network, for the drop-path ramp
    se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET
    norm: Norm = DEFAULT_NORM  # the network's, as se_style: the builder's norms take it

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
    norm: Norm = DEFAULT_NORM

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
        placement = StagePlacement(index, stage, in_channels, size, first_block_index, arch.se_style, arch.norm)
        yield placement, output_size
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
                             placement.se_style, placement.norm)
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
