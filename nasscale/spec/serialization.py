"""Architectures from and to files: dicts, JSON and YAML with one-line errors naming the field, architecture
files by path, and the one-line ``summary`` shown in tables and reports.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, cast

from nasscale.errors import SpecError, read_text_file
from nasscale.spec.arch import (
    ARCH_FIELDS,
    Arch,
    to_dict,
)
from nasscale.spec.norm import NORM_FIELDS, NORM_FLOAT_FIELDS, Norm
from nasscale.spec.stage import STAGE_FIELDS, Stage
from nasscale.spec.vocabulary import (
    ACTIVATION_ALIASES,
    APPLICABLE_FIELDS,
    DEFAULT_ACTIVATION,
    HEADS_WITH_CHANNELS,
    Activation,
    BlockType,
    HeadType,
    Pool,
    SqueezeExciteStyle,
    StemType,
)


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


def norm_from_dict(data: Any, path: str = "norm") -> Norm:
    _check_keys(path, data, NORM_FIELDS, ())
    values = dict(data)
    for name in NORM_FLOAT_FIELDS:
        # PyYAML reads 1e-3 (no dot, YAML 1.1) as a string; take it as the number it spells.
        if isinstance(values.get(name), str):
            with contextlib.suppress(ValueError):  # else Norm's check names the field and the value
                values[name] = float(values[name])
    try:
        return Norm(**values)
    except SpecError as error:
        raise SpecError(path + error.path.removeprefix("norm"), error.message) from None


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
    if "norm" in values:
        values["norm"] = norm_from_dict(values["norm"])
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

    return cast(str, yaml.safe_dump(to_dict(arch), sort_keys=False))  # a str when given no stream


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
    text = read_text_file(path, what="architecture file")
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
    if "num_heads" in applicable:
        parts.append(f"h{stage.num_heads}" + (f" p{stage.patch_size}" if stage.patch_size > 1 else "")
                     + (" cls" if stage.class_token else "") + (" pos" if stage.position_embedding else ""))
    if "residual_scale" in applicable:
        parts.append(f"scale{stage.residual_scale:g}" + ("" if stage.output_activation else " noact"))
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
