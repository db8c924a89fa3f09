"""The architecture spec: frozen dataclasses that describe a CNN precisely enough to build it and to
count its cost without building it.

An ``Arch`` is a stem, a tuple of ``Stage`` and a head. A stage repeats one block type; its first
block carries the stride and changes the width. Nothing derivable is stored: a stage's input width is
the previous stage's output width. The derived quantities that both the builder and the cost model
need (expanded width, squeeze width, residual rule, output size) live here, in one place, so the two
cannot drift apart.

This module is part of the light core: it imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterator, Mapping
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


class Activation(StrEnum):
    RELU = "relu"
    RELU6 = "relu6"
    SILU = "silu"
    HARDSWISH = "hardswish"
    GELU = "gelu"


# Names users may write for an activation; "swish" is SiLU under its EfficientNet name.
ACTIVATION_ALIASES = {"swish": Activation.SILU}


class StemType(StrEnum):
    CONV = "conv"  # 3x3 stride-2 conv, BatchNorm, activation (EfficientNet, MobileNet, MnasNet)
    PATCHIFY = "patchify"  # 4x4 stride-4 conv with bias, LayerNorm (ConvNeXt)


class HeadType(StrEnum):
    CONV = "conv"  # 1x1 conv to head_channels, BN, activation, global pool, dropout, linear
    NORM = "norm"  # global pool, LayerNorm, dropout, linear (ConvNeXt); head_channels must be 0


# Which optional stage fields mean something for each block type. A field outside this table must
# keep its default, so that one network has exactly one spec (and one arch_id).
APPLICABLE_FIELDS: dict[BlockType, frozenset[str]] = {
    BlockType.MBCONV: frozenset({"kernel_size", "expand_ratio", "se_ratio", "activation", "skip"}),
    BlockType.FUSED_MBCONV: frozenset({"kernel_size", "expand_ratio", "se_ratio", "activation", "skip"}),
    BlockType.SEPCONV: frozenset({"kernel_size", "se_ratio", "activation", "skip"}),
    BlockType.CONV: frozenset({"kernel_size", "activation", "skip"}),
    BlockType.CONVNEXT: frozenset({"kernel_size", "expand_ratio", "activation", "skip"}),
}

# The activation a block type gets when a spec file does not name one.
DEFAULT_ACTIVATION: dict[BlockType, Activation] = {
    BlockType.MBCONV: Activation.SILU,
    BlockType.FUSED_MBCONV: Activation.SILU,
    BlockType.SEPCONV: Activation.SILU,
    BlockType.CONV: Activation.SILU,
    BlockType.CONVNEXT: Activation.GELU,
}

MAX_KERNEL_SIZE = 11
CONVNEXT_LAYER_SCALE_INIT = 1e-6
PATCHIFY_SIZE = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    block: BlockType
    num_blocks: int
    out_channels: int
    stride: int  # applied to the first block only (to the downsampling layer for ConvNeXt)
    kernel_size: int = 3
    expand_ratio: float = 1.0  # MBConv/Fused-MBConv expansion; ConvNeXt MLP ratio
    se_ratio: float = 0.0  # squeeze width as a fraction of the block's input channels; 0 = no SE
    activation: Activation = Activation.SILU
    skip: bool = True  # residual connection where input and output shapes match

    def __post_init__(self) -> None:
        validate_stage(self, "stage")


@dataclass(frozen=True, slots=True, kw_only=True)
class Arch:
    stages: tuple[Stage, ...]
    stem_channels: int
    head_channels: int
    resolution: int
    in_channels: int = 3
    num_classes: int = 1000
    stem: StemType = StemType.CONV
    head: HeadType = HeadType.CONV
    activation: Activation = Activation.SILU  # of the stem and the head
    dropout: float = 0.2
    drop_path_rate: float = 0.0

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


# ---------------------------------------------------------------------------------------------------
# Derived quantities shared by the builder (build.py) and the cost model (cost.py)


def conv_output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel_size) // stride + 1


def same_padding(kernel_size: int) -> int:
    return kernel_size // 2


def expanded_channels(in_channels: int, expand_ratio: float) -> int:
    # round() rather than a multiple of 8: for the integer ratios of every published model the two
    # agree, and this keeps fractional search choices (e.g. 2.5) meaningful.
    return max(1, round(in_channels * expand_ratio))


def squeeze_channels(in_channels: int, se_ratio: float) -> int:
    return max(1, int(in_channels * se_ratio))


def has_residual(stage: Stage, in_channels: int, stride: int) -> bool:
    return stage.skip and stride == 1 and in_channels == stage.out_channels


def stem_stride(stem: StemType) -> int:
    return PATCHIFY_SIZE if stem is StemType.PATCHIFY else 2


def stem_output_size(arch: Arch) -> int:
    if arch.stem is StemType.PATCHIFY:
        return conv_output_size(arch.resolution, PATCHIFY_SIZE, PATCHIFY_SIZE, 0)
    return conv_output_size(arch.resolution, 3, 2, 1)


def convnext_needs_transition(in_channels: int, stage: Stage) -> bool:
    return stage.stride != 1 or in_channels != stage.out_channels


@dataclass(frozen=True, slots=True)
class StagePlacement:
    """One stage with its input width and size, as the builder and the cost model place it."""

    index: int
    stage: Stage
    in_channels: int
    input_size: int  # spatial size (square) of the stage's input
    first_block_index: int  # over the whole network, for the drop-path ramp

    @property
    def has_transition(self) -> bool:
        """ConvNeXt stages open with LayerNorm + a stride x stride conv when size or width changes."""
        return self.stage.block is BlockType.CONVNEXT and convnext_needs_transition(self.in_channels, self.stage)

    @property
    def blocks_input_size(self) -> int:
        if self.has_transition:
            return conv_output_size(self.input_size, self.stage.stride, self.stage.stride, 0)
        return self.input_size


@dataclass(frozen=True, slots=True)
class BlockPlacement:
    """One block of the network with everything the builder and cost model need to place it."""

    stage: Stage
    block_index: int  # over the whole network, for the drop-path ramp
    in_channels: int
    stride: int
    input_size: int  # spatial size (square) of the block's input

    @property
    def output_size(self) -> int:
        kernel = self.stage.kernel_size
        return conv_output_size(self.input_size, kernel, self.stride, same_padding(kernel))


def stage_output_size(stage: Stage, in_channels: int, size: int) -> int:
    if stage.block is BlockType.CONVNEXT:
        # ConvNeXt downsamples with a separate LN + stride x stride conv, then keeps the size.
        if convnext_needs_transition(in_channels, stage):
            return conv_output_size(size, stage.stride, stage.stride, 0)
        return size
    return conv_output_size(size, stage.kernel_size, stage.stride, same_padding(stage.kernel_size))


def iter_stages(arch: Arch) -> Iterator[StagePlacement]:
    size = stem_output_size(arch)
    in_channels = arch.stem_channels
    first_block_index = 0
    for index, stage in enumerate(arch.stages):
        yield StagePlacement(index, stage, in_channels, size, first_block_index)
        size = stage_output_size(stage, in_channels, size)
        in_channels = stage.out_channels
        first_block_index += stage.num_blocks


def stage_blocks(placement: StagePlacement) -> Iterator[BlockPlacement]:
    stage = placement.stage
    # A ConvNeXt transition has already changed width and size; its blocks all keep both.
    in_channels = stage.out_channels if placement.has_transition else placement.in_channels
    size = placement.blocks_input_size
    for repeat in range(stage.num_blocks):
        stride = stage.stride if repeat == 0 and stage.block is not BlockType.CONVNEXT else 1
        block = BlockPlacement(stage, placement.first_block_index + repeat, in_channels, stride, size)
        yield block
        size = block.output_size
        in_channels = stage.out_channels


def iter_blocks(arch: Arch) -> Iterator[BlockPlacement]:
    for placement in iter_stages(arch):
        yield from stage_blocks(placement)


def total_blocks(arch: Arch) -> int:
    return sum(stage.num_blocks for stage in arch.stages)


def final_feature_size(arch: Arch) -> int:
    *_, last = iter_stages(arch)
    return stage_output_size(last.stage, last.in_channels, last.input_size)


def last_channels(arch: Arch) -> int:
    return arch.stages[-1].out_channels


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
    if not isinstance(stage.skip, bool):
        raise SpecError(f"{path}.skip", f"must be true or false, got {stage.skip!r}")
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


def validate_arch(arch: Arch) -> None:
    if not isinstance(arch.stages, tuple) or not arch.stages:
        raise SpecError("stages", f"must be a non-empty tuple of Stage, got {arch.stages!r}")
    for index, stage in enumerate(arch.stages):
        if not isinstance(stage, Stage):
            raise SpecError(f"stages[{index}]", f"must be a Stage, got {type(stage).__name__}")
    _check_int("stem_channels", arch.stem_channels, minimum=1)
    _check_int("resolution", arch.resolution, minimum=1)
    _check_int("in_channels", arch.in_channels, minimum=1)
    _check_int("num_classes", arch.num_classes, minimum=1)
    _check_enum("stem", arch.stem, StemType)
    _check_enum("head", arch.head, HeadType)
    _check_enum("activation", arch.activation, Activation)
    if arch.head is HeadType.CONV:
        _check_int("head_channels", arch.head_channels, minimum=1)
    elif arch.head_channels != 0:
        raise SpecError("head_channels", f"must be 0 with a norm head, got {arch.head_channels!r}")
    _check_float("dropout", arch.dropout, low=0.0, high=1.0, high_inclusive=False)
    _check_float("drop_path_rate", arch.drop_path_rate, low=0.0, high=1.0, high_inclusive=False)
    _check_spatial_sizes(arch)


def _check_spatial_sizes(arch: Arch) -> None:
    if stem_output_size(arch) < 1:
        raise SpecError("resolution", f"{arch.resolution} is too small for the {arch.stem.value} stem")
    for placement in iter_stages(arch):
        if placement.has_transition and placement.input_size < placement.stage.stride:
            raise SpecError(
                "resolution",
                f"{arch.resolution} is too small: stages[{placement.index}] gets a "
                f"{placement.input_size}x{placement.input_size} input",
            )


# ---------------------------------------------------------------------------------------------------
# Serialisation: plain dicts, canonical JSON, arch_id


def stage_to_dict(stage: Stage) -> dict[str, Any]:
    return {
        name: value.value if isinstance(value, StrEnum) else value
        for name, value in ((name, getattr(stage, name)) for name in STAGE_FIELDS)
    }


def to_dict(arch: Arch) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in ARCH_FIELDS:
        value = getattr(arch, name)
        if name == "stages":
            data[name] = [stage_to_dict(stage) for stage in value]
        else:
            data[name] = value.value if isinstance(value, StrEnum) else value
    return data


def canonical_json(arch: Arch) -> str:
    data = to_dict(arch)
    # Floats print identically whether they came in as 6 or 6.0.
    for stage in data["stages"]:
        stage["expand_ratio"] = float(stage["expand_ratio"])
        stage["se_ratio"] = float(stage["se_ratio"])
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
ARCH_REQUIRED = ("stages", "stem_channels", "resolution")


def stage_from_dict(data: Mapping[str, Any], path: str = "stage") -> Stage:
    _check_keys(path, data, STAGE_FIELDS, STAGE_REQUIRED)
    values = dict(data)
    block = _parse_enum(f"{path}.block", values["block"], BlockType)
    values["block"] = block
    values["activation"] = _parse_enum(
        f"{path}.activation", values.get("activation", DEFAULT_ACTIVATION[block].value), Activation,
        ACTIVATION_ALIASES,
    )
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
    for name, enum in (("stem", StemType), ("head", HeadType)):
        if name in values:
            values[name] = _parse_enum(name, values[name], enum)
    if "activation" in values:
        values["activation"] = _parse_enum("activation", values["activation"], Activation, ACTIVATION_ALIASES)
    if values.get("head") is HeadType.NORM:
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
    """A compact one-line form, e.g. ``mbconv e6 k5 se0.25 40x2 s2``."""
    parts = [stage.block.value]
    applicable = APPLICABLE_FIELDS[stage.block]
    if "expand_ratio" in applicable:
        parts.append(f"e{stage.expand_ratio:g}")
    parts.append(f"k{stage.kernel_size}")
    if "se_ratio" in applicable and stage.se_ratio > 0:
        parts.append(f"se{stage.se_ratio:g}")
    if not stage.skip:
        parts.append("noskip")
    parts.append(f"{stage.out_channels}x{stage.num_blocks}")
    parts.append(f"s{stage.stride}")
    return " ".join(parts)


def summary(arch: Arch) -> str:
    stages = " | ".join(stage_summary(stage) for stage in arch.stages)
    head = f"head {arch.head_channels}" if arch.head is HeadType.CONV else "head norm"
    return f"{arch.stem.value} {arch.stem_channels} | {stages} | {head} @{arch.resolution}"
