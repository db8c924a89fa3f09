"""Interchange with timm's EfficientNet-family architecture strings.

timm (pytorch-image-models) defines EfficientNet, EfficientNetV2, MnasNet, MobileNetV2/V3 and their kin by an
``arch_def``: a list of stages, each a list of block strings such as ``ir_r2_k3_s2_e6_c24_se0.25``, decoded by
``_decode_block_str`` in ``timm/models/_efficientnet_builder.py``. A string is the block type, then options joined
by "_":

  r<n> repeats    k<n> kernel    s<n> stride (of the first repeat)    e<x> expansion    c<n> output channels
  se<x> squeeze-excite ratio    n<re|r6|hs|sw> activation (the model's where absent)    noskip, skip
  a<n>, p<n> the expansion and projection kernels (only 1 here)

The block types and what they are here:
  ds    sepconv                kxk depthwise, SE, 1x1 linear; a residual where the shapes allow, unless _noskip
  dsa   depthwise_separable    the same with an activation after the 1x1 and never a residual (MobileNetV1)
  ir    mbconv, e != 1         timm keeps the 1x1 expansion at e1 where mbconv drops it: mbconv e1 exports as ds
  er    fused_mbconv, e != 1   likewise: timm's er at e1 adds a 1x1 projection that fused_mbconv e1 does not have
  cn    fused_mbconv e1        one kxk conv (EfficientNetV2's Fused-MBConv1), no SE, a residual only with _skip;
                               conv stages export as cn too (the same layers)

Squeeze-excite ratios carry over unchanged; the style is a property of the timm model class, so it is an argument
of the import and ``Arch.se_style`` on export. timm's EfficientNet divides the ratio by the expansion and applies
it to the expanded width (``se_from_exp=False``), so the squeeze is round(ratio x block input width): our
efficientnet style, which takes int() of the same product. timm's MobileNetV3 applies the ratio to the expanded
width and makes it divisible by 8 (``se_from_exp=True``, ``rd_round_fn=round_channels``): our mobilenet_v3 style.

timm also rounds output widths (``round_chs_fn``) and expanded widths (``make_divisible``) to multiples of 8. Both
directions compute every block's widths as timm builds them and name the first stage where they differ from the
spec's, so an exported string builds the same network in timm and an imported one is the network timm builds.

Export is canonical: one string per timm stage (timm may list several in one stage; each is a stage here, since
timm strides only the first block of a stage), options in timm's order r k s e c se n skip, and e written for
every block (e1 where there is no expansion, as timm's EfficientNet definitions write it). Importing an export
gives ``timm_equivalent(arch)``: the same network, with mbconv e1 spelled sepconv and conv spelled fused_mbconv e1.

Light core: no torch.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nasscale.errors import InterchangeError, SpecError
from nasscale.spec.arch import Arch, BlockPlacement, iter_stages, stage_blocks
from nasscale.spec.channels import expanded_channels, make_divisible
from nasscale.spec.serialization import stage_summary
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, SqueezeExciteStyle, StemType

ArchDef = list[list[str]]

# The block types this module reads and writes, and the block each one is here.
TIMM_BLOCKS: dict[str, BlockType] = {
    "ds": BlockType.SEPCONV,
    "dsa": BlockType.DEPTHWISE_SEPARABLE,
    "ir": BlockType.MBCONV,
    "er": BlockType.FUSED_MBCONV,
    "cn": BlockType.FUSED_MBCONV,
}
# timm block types with no equivalent here, with what they are.
TIMM_ONLY_BLOCKS = {"tu": "Tucker conv", "uir": "universal inverted residual (MobileNetV4)",
                    "mha": "multi-head attention", "mqa": "multi-query attention"}
TIMM_ACTIVATIONS: dict[str, Activation] = {
    "re": Activation.RELU, "r6": Activation.RELU6, "hs": Activation.HARDSWISH, "sw": Activation.SILU,
}
ACTIVATION_CODES = {activation: code for code, activation in TIMM_ACTIVATIONS.items()}
# Activation names people write where timm wants a code (an error hint only: timm ignores such options).
ACTIVATION_NAMES = {"relu": "re", "relu6": "r6", "hswish": "hs", "swish": "sw", "silu": "sw"}
# timm's act_layer names for the model's own activation (stem, head, and blocks without an n option).
TIMM_ACT_LAYERS = {Activation.RELU: "relu", Activation.RELU6: "relu6", Activation.SILU: "silu",
                   Activation.HARDSWISH: "hard_swish", Activation.GELU: "gelu"}
INTEGER_OPTIONS = ("r", "k", "s", "c", "a", "p")
NUMBER_OPTIONS = ("e", "se")
REQUIRED_OPTIONS = ("r", "k", "s", "c")
# timm options with no equivalent here, with what they are.
UNSUPPORTED_OPTIONS = {"d": "space-to-depth", "cc": "CondConv experts", "gs": "group size",
                       "fc": "forced input width", "ir": "Tucker input rank", "or": "Tucker output rank",
                       "h": "attention heads", "v": "attention key-value stride"}
TIMM_WIDTH_DIVISOR = 8  # timm's round_channels and make_divisible


@dataclass(frozen=True, slots=True)
class BlockString:
    """One decoded timm block string, as written (None where an option is absent)."""

    kind: str
    repeats: int
    kernel_size: int
    stride: int
    out_channels: int
    expand_ratio: float | None = None
    se_ratio: float = 0.0
    activation: Activation | None = None  # None: the model's
    skip: bool | None = None  # True for _skip, False for _noskip


# ------------------------------------------------------------------------------------------------ parsing


def parse_block_string(text: str, where: str | None = None) -> BlockString:
    """Decode one timm block string; errors name ``where`` (default: the string itself)."""
    where = where or repr(text)
    if not isinstance(text, str) or not text.strip():
        raise InterchangeError(f"{where}: not a timm block string")
    kind, *options = text.strip().split("_")
    _check_kind(kind, where)
    values: dict[str, str] = {}
    activation = skip = None
    for option in options:
        if option in ("skip", "noskip"):
            skip = option == "skip"
        elif option.startswith("n"):  # timm reads every other option that starts with n as an activation
            activation = _parse_activation(option, where)
        else:
            key, value = _split_option(option, where)
            if key in values:
                raise InterchangeError(f"{where}: option {key!r} is given twice")
            values[key] = value
    missing = [key for key in REQUIRED_OPTIONS + (("e",) if kind in ("ir", "er") else ()) if key not in values]
    if missing:
        raise InterchangeError(f"{where}: missing option {', '.join(missing)} (timm needs it for {kind} blocks)")
    numbers = {key: _parse_number(key, value, where) for key, value in values.items()}
    for key in ("a", "p"):
        if numbers.get(key, 1) != 1:
            raise InterchangeError(f"{where}: option {key}{values[key]}: only 1x1 expansion and projection convs "
                                   f"are expressible")
    return BlockString(kind=kind, repeats=numbers["r"], kernel_size=numbers["k"], stride=numbers["s"],
                       out_channels=numbers["c"], expand_ratio=numbers.get("e"), se_ratio=numbers.get("se", 0.0),
                       activation=activation, skip=skip)


def _check_kind(kind: str, where: str) -> None:
    if kind in TIMM_BLOCKS:
        return
    if kind in TIMM_ONLY_BLOCKS:
        raise InterchangeError(f"{where}: timm's {kind} blocks ({TIMM_ONLY_BLOCKS[kind]}) have no equivalent here; "
                               f"{', '.join(TIMM_BLOCKS)} do")
    raise InterchangeError(f"{where}: unknown timm block type {kind!r}; expected one of {', '.join(TIMM_BLOCKS)}")


def _parse_activation(option: str, where: str) -> Activation:
    code = option[1:]
    if code in TIMM_ACTIVATIONS:
        return TIMM_ACTIVATIONS[code]
    if code == "mi":
        raise InterchangeError(f"{where}: activation nmi (mish) has no equivalent here")
    raise InterchangeError(f"{where}: unknown activation {option!r}; timm's codes are "
                           f"{', '.join('n' + code for code in TIMM_ACTIVATIONS)}")


def _split_option(option: str, where: str) -> tuple[str, str]:
    """timm's rule: the letters before the first digit are the key, the rest is the value."""
    match = re.fullmatch(r"([a-z]+)(\d.*)", option)
    key = match.group(1) if match else option
    if key in UNSUPPORTED_OPTIONS:
        raise InterchangeError(f"{where}: option {option!r} ({UNSUPPORTED_OPTIONS[key]}) has no equivalent here")
    if option in ACTIVATION_NAMES:
        raise InterchangeError(f"{where}: unknown option {option!r}; timm writes that activation "
                               f"n{ACTIVATION_NAMES[option]}")
    if match is None or key not in INTEGER_OPTIONS + NUMBER_OPTIONS:
        raise InterchangeError(f"{where}: unknown option {option!r}")
    return key, match.group(2)


def _parse_number(key: str, value: str, where: str) -> Any:
    if key in INTEGER_OPTIONS:
        if value.isdigit():
            return int(value)
        if key == "k" and re.fullmatch(r"\d+(\.\d+)+", value):
            raise InterchangeError(f"{where}: k{value}: mixed kernels (MixNet) have no equivalent here")
        raise InterchangeError(f"{where}: option {key}{value}: must be a whole number")
    try:
        number = float(value)
    except ValueError:
        raise InterchangeError(f"{where}: option {key}{value}: must be a number") from None
    return int(number) if number.is_integer() else number  # e6 reads as 6, as the presets write it


def arch_def_from_text(text: str) -> ArchDef:
    """An arch_def typed on a command line: a Python or JSON list of lists (as in timm's source), or stages
    separated by spaces or ";" with the strings of one stage separated by ","."""
    text = text.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            raise InterchangeError("arch_def: not a valid list of lists of block strings") from None
        return _checked_arch_def(value)
    stages = [[string for string in stage.split(",") if string] for stage in re.split(r"[\s;]+", text) if stage]
    return _checked_arch_def(stages)


def _checked_arch_def(arch_def: Any) -> ArchDef:
    shaped = isinstance(arch_def, Sequence) and not isinstance(arch_def, str) and len(arch_def) > 0 and all(
        isinstance(stage, Sequence) and not isinstance(stage, str) and len(stage) > 0
        and all(isinstance(text, str) for text in stage) for stage in arch_def)
    if not shaped:
        raise InterchangeError(f"arch_def: must be a non-empty list of stages, each a non-empty list of block "
                               f"strings, got {arch_def!r}")
    return [list(stage) for stage in arch_def]


# ------------------------------------------------------------------------------------------------- import


def arch_from_timm(arch_def: Sequence[Sequence[str]], *, stem_channels: int, head_channels: int, resolution: int,
                   activation: Activation = Activation.SILU,
                   se_style: SqueezeExciteStyle = SqueezeExciteStyle.EFFICIENTNET, **arch_fields: Any) -> Arch:
    """The architecture of a timm ``arch_def`` with a conv stem of ``stem_channels`` and a conv head of
    ``head_channels`` (timm's ``stem_size`` and ``num_features``). ``activation`` is timm's model ``act_layer``
    (EfficientNet: silu, MnasNet: relu, MobileNetV3: hardswish); ``se_style`` is the model class's SE (see the
    module docstring). Other Arch fields (num_classes, dropout, ...) pass through."""
    stages: list[Stage] = []
    sources: list[str] = []
    for stage_index, strings in enumerate(_checked_arch_def(arch_def)):
        for block_index, text in enumerate(strings):
            where = f"arch_def[{stage_index}][{block_index}] {text!r}"
            block = parse_block_string(text, where)
            if block_index > 0 and block.stride != 1:
                raise InterchangeError(f"{where}: timm strides only the first block of a stage, so s{block.stride} "
                                       f"would be ignored; start a new stage with it")
            stages.append(stage_from_block(block, activation, where))
            sources.append(where)
    try:
        arch = Arch(stages=tuple(stages), stem_channels=stem_channels, head_channels=head_channels,
                    resolution=resolution, activation=activation, se_style=se_style, **arch_fields)
    except SpecError as error:
        raise InterchangeError(f"{_source_of(error.path, sources)}: {error.message}") from None
    if arch.stem is StemType.CONV and make_divisible(stem_channels, TIMM_WIDTH_DIVISOR) != stem_channels:
        raise InterchangeError(f"stem_channels: timm rounds stem_size {stem_channels} to "
                               f"{make_divisible(stem_channels, TIMM_WIDTH_DIVISOR)} (multiples of 8)")
    check_timm_widths(arch, sources)
    return arch


def stage_from_block(block: BlockString, model_activation: Activation, where: str) -> Stage:
    """The stage one decoded block string describes (its repeats are the stage's blocks)."""
    kind, expand = block.kind, block.expand_ratio
    if kind in ("ds", "dsa", "cn") and expand not in (None, 1):
        raise InterchangeError(f"{where}: timm ignores e on {kind} blocks (they do not expand); write e1 or leave it "
                               f"out")
    if kind in ("ir", "er") and expand == 1:
        built = "a 1x1 expansion conv that mbconv e1 drops" if kind == "ir" else \
            "a 1x1 projection that fused_mbconv e1 (timm's cn) does not have"
        raise InterchangeError(f"{where}: timm's {kind} at e1 keeps {built}; write {'ds' if kind == 'ir' else 'cn'} "
                               f"for an unexpanded block")
    if kind in ("dsa", "cn") and block.se_ratio:
        reason = "timm ignores se on cn blocks" if kind == "cn" else "depthwise_separable has no squeeze-excite"
        raise InterchangeError(f"{where}: se{block.se_ratio:g}: {reason}")
    if kind == "dsa" and block.skip:
        raise InterchangeError(f"{where}: dsa blocks never add a residual, so _skip would be ignored")
    # cn adds its input only when told to; the other types unless told not to.
    skip = block.skip is True if kind == "cn" else block.skip is not False
    try:
        return Stage(block=TIMM_BLOCKS[kind], num_blocks=block.repeats, out_channels=block.out_channels,
                     stride=block.stride, kernel_size=block.kernel_size, expand_ratio=1 if expand is None else expand,
                     se_ratio=block.se_ratio, activation=block.activation or model_activation,
                     skip=skip if kind != "dsa" else True)
    except SpecError as error:
        raise InterchangeError(f"{where}: {error.path.removeprefix('stage.')} {error.message}") from None


def _source_of(path: str, sources: list[str]) -> str:
    """The block string behind an Arch error path such as ``stages[3].out_channels``."""
    match = re.match(r"stages\[(\d+)\]", path)
    return sources[int(match.group(1))] if match else path


# ------------------------------------------------------------------------------------------------- export


def arch_to_timm(arch: Arch) -> ArchDef:
    """timm's ``arch_def`` for the stages of ``arch`` (canonical: one string per stage). Raises
    InterchangeError naming the first stage that no timm block string expresses."""
    sources = [f"stages[{index}] ({stage_summary(stage)})" for index, stage in enumerate(arch.stages)]
    arch_def = [[block_string(stage, arch.activation, where)] for stage, where in zip(arch.stages, sources,
                                                                                        strict=True)]
    check_timm_widths(arch, sources)
    return arch_def


def timm_block_type(stage: Stage, where: str = "stage") -> str:
    """Which timm block type expresses ``stage`` (see the module docstring)."""
    match stage.block:
        case BlockType.SEPCONV:
            return "ds"
        case BlockType.MBCONV:
            return "ds" if stage.expand_ratio == 1 else "ir"
        case BlockType.FUSED_MBCONV if stage.expand_ratio != 1:
            return "er"
        case BlockType.FUSED_MBCONV if stage.se_ratio > 0:
            raise InterchangeError(f"{where}: fused_mbconv at e1 with squeeze-excite has no timm string: cn has no "
                                   f"SE and er at e1 adds a 1x1 projection")
        case BlockType.FUSED_MBCONV | BlockType.CONV:
            return "cn"
        case BlockType.DEPTHWISE_SEPARABLE:
            return "dsa"
    raise InterchangeError(f"{where}: {stage.block.value} blocks have no timm block string (only sepconv, "
                           f"depthwise_separable, mbconv, fused_mbconv and conv do)")


def block_string(stage: Stage, model_activation: Activation, where: str = "stage") -> str:
    """One stage as a timm block string, options in timm's order."""
    kind = timm_block_type(stage, where)
    parts = [kind, f"r{stage.num_blocks}", f"k{stage.kernel_size}", f"s{stage.stride}",
             f"e{_format_number(stage.expand_ratio)}", f"c{stage.out_channels}"]
    if stage.se_ratio > 0:
        parts.append(f"se{_format_number(stage.se_ratio)}")
    if stage.activation != model_activation:
        if stage.activation not in ACTIVATION_CODES:
            raise InterchangeError(f"{where}: timm block strings have no code for {stage.activation.value} "
                                   f"({', '.join('n' + code for code in TIMM_ACTIVATIONS)}); only the model's "
                                   f"act_layer can be {stage.activation.value}")
        parts.append("n" + ACTIVATION_CODES[stage.activation])
    if kind == "cn" and stage.skip:
        parts.append("skip")
    elif kind in ("ds", "ir", "er") and not stage.skip:
        parts.append("noskip")
    return "_".join(parts)


def _format_number(value: float) -> str:
    """6 as "6", 0.25 as "0.25"; a ratio such as 88/24 in full, so that it reads back to the same float."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def timm_equivalent(arch: Arch) -> Arch:
    """``arch`` as importing its export spells it: the same network (layers, cost), with mbconv e1 stages as
    sepconv and conv stages as fused_mbconv e1."""
    def equivalent(stage: Stage) -> Stage:
        if stage.block is BlockType.MBCONV and stage.expand_ratio == 1:
            return dataclasses.replace(stage, block=BlockType.SEPCONV, expand_ratio=1.0)
        if stage.block is BlockType.CONV:
            return dataclasses.replace(stage, block=BlockType.FUSED_MBCONV)
        return stage

    return arch.replace(stages=tuple(equivalent(stage) for stage in arch.stages))


def timm_model_kwargs(arch: Arch) -> dict[str, Any]:
    """Keyword arguments of timm's ``EfficientNet`` class that, with ``block_args=decode_arch_def(arch_to_timm(
    arch))``, build ``arch``: its stem (3x3 stride-2 conv, BN, activation) and head (1x1 conv, BN, activation,
    pool, dropout, linear) are our conv stem and conv head."""
    problems = []
    if arch.stem is not StemType.CONV:
        problems.append(f"its stem is {arch.stem.value}, not conv")
    if arch.head is not HeadType.CONV or arch.classifier_hidden:
        problems.append("its head is not a conv head with a single linear classifier")
    if arch.se_style is not SqueezeExciteStyle.EFFICIENTNET:
        problems.append(f"its squeeze-excite is {arch.se_style.value}-style (timm's MobileNetV3 class)")
    for name, width in (("stem_channels", arch.stem_channels), ("head_channels", arch.head_channels)):
        if width and make_divisible(width, TIMM_WIDTH_DIVISOR) != width:
            problems.append(f"timm rounds its {name} {width} to {make_divisible(width, TIMM_WIDTH_DIVISOR)}")
    if problems:
        raise InterchangeError(f"timm's EfficientNet class cannot build this architecture: {'; '.join(problems)}")
    return {"stem_size": arch.stem_channels, "num_features": arch.head_channels,
            "act_layer": TIMM_ACT_LAYERS[arch.activation], "num_classes": arch.num_classes,
            "in_chans": arch.in_channels, "drop_rate": arch.dropout, "drop_path_rate": arch.drop_path_rate}


# ------------------------------------------------------------------------------------------------- widths


def check_timm_widths(arch: Arch, sources: Sequence[str]) -> None:
    """Raise InterchangeError at the first block whose widths timm would build differently (``sources`` names
    each stage for the message)."""
    for placement in iter_stages(arch):
        for block in stage_blocks(placement):
            mismatch = timm_width_mismatch(block)
            if mismatch:
                raise InterchangeError(f"{sources[placement.index]}: {mismatch}")


def timm_width_mismatch(block: BlockPlacement) -> str | None:
    """How timm's widths for this block differ from the spec's, or None."""
    stage, in_channels = block.stage, block.in_channels
    out_channels = make_divisible(stage.out_channels, TIMM_WIDTH_DIVISOR)
    if out_channels != stage.out_channels:
        return f"timm rounds c{stage.out_channels} to {out_channels} output channels (multiples of 8)"
    kind = timm_block_type(stage)
    if kind in ("cn", "dsa"):
        return None
    expands = kind in ("ir", "er")
    hidden = expanded_channels(in_channels, stage.expand_ratio) if expands else in_channels
    timm_hidden = make_divisible(in_channels * stage.expand_ratio, TIMM_WIDTH_DIVISOR) if expands else in_channels
    if expands and (hidden != timm_hidden or hidden == in_channels):
        return (f"timm expands {in_channels} channels by e{stage.expand_ratio:g} to {timm_hidden} (multiples of 8), "
                f"this block to {hidden}" + (" (so it has no expansion layer)" if hidden == in_channels else ""))
    if stage.se_ratio == 0:
        return None
    if block.se_style is SqueezeExciteStyle.MOBILENET_V3:
        timm_squeezed = make_divisible(timm_hidden * stage.se_ratio, TIMM_WIDTH_DIVISOR)
    else:  # timm divides the ratio by the expansion and applies it to the expanded width
        timm_squeezed = round(timm_hidden * (stage.se_ratio / (stage.expand_ratio if expands else 1.0)))
    if timm_squeezed != block.squeezed:
        return f"timm squeezes to {timm_squeezed} channels (se{stage.se_ratio:g}), this block to {block.squeezed}"
    return None
