"""Helpers shared by the test suite and the benchmarks (as optuna.testing is): random architectures
that exercise every block type and option of the spec. Light: no torch."""

import dataclasses
import random
from typing import Any

from nasscale.errors import SpecError
from nasscale.spec.arch import Arch
from nasscale.spec.channels import bottleneck_channels
from nasscale.spec.inception import MIXED_BLOCKS, MIXED_LAYOUTS, mixed_output_channels
from nasscale.spec.norm import Norm
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import (
    APPLICABLE_FIELDS,
    SE_STYLE_BLOCKS,
    Activation,
    BlockType,
    HeadType,
    Pool,
    SqueezeExciteStyle,
    StemType,
)

# The stems weighted so that the small-stride ones, which leave room for deep stacks, come up more often.
STEM_CHOICES = (StemType.CONV, StemType.CONV, StemType.NONE, *StemType)
# What compound scaling cannot take: widths tied to other fields or to the input, sizes that shrink with depth.
UNSCALABLE_BLOCKS = frozenset({BlockType.DENSE, BlockType.INCEPTION}) | MIXED_BLOCKS
MAX_ATTEMPTS = 100


def random_stage(rng: random.Random, block: BlockType, in_channels: int = 8, *, scalable: bool = False) -> Stage:
    """A random stage of ``block`` fed ``in_channels`` (dense and inception widths depend on it); ``scalable``
    keeps to ungrouped, padded convs."""
    applicable = APPLICABLE_FIELDS[block]
    fields: dict[str, Any] = {
        "block": block,
        "num_blocks": rng.randint(1, 2),
        "out_channels": rng.choice([3, 4, 8, 12, 16, 24, 32]),
        "stride": rng.choice([1, 2]),
        "activation": rng.choice(list(Activation)),
    }
    if "kernel_size" in applicable:
        fields["kernel_size"] = rng.choice([1, 3, 5, 7])
    if "skip" in applicable:
        fields["skip"] = rng.random() < 0.8
    if "expand_ratio" in applicable:
        fields["expand_ratio"] = rng.choice([1, 2, 2.5, 3, 4, 6])
    if "se_ratio" in applicable:
        fields["se_ratio"] = rng.choice([0.0, 0.0, 0.25, 0.5])
    if "bottleneck_ratio" in applicable:
        fields["bottleneck_ratio"] = rng.choice([0.25, 0.5, 1.0])
    if "groups" in applicable:
        width = bottleneck_channels(fields["out_channels"], fields["bottleneck_ratio"])
        fields["groups"] = 1 if scalable else rng.choice([divisor for divisor in range(1, 9) if width % divisor == 0])
    if "pool" in applicable and fields["stride"] == 2:
        fields["pool"] = rng.choice(list(Pool))
    if "same_padding" in applicable and fields.get("kernel_size", 1) > 1 and not scalable:
        fields["same_padding"] = rng.random() < 0.7
    if block is BlockType.TRANSFORMER:
        fields |= _transformer_fields(rng, fields)
    return Stage(**fields | _derived_widths(rng, block, in_channels, fields))


def _transformer_fields(rng: random.Random, fields: dict[str, Any]) -> dict[str, Any]:
    """Heads that divide the width, a patch size at stride 1 (2 is stride 2's), a position embedding or none; a
    class token only on the last stage, which random_arch gives it with its head."""
    return {"num_heads": rng.choice([heads for heads in (1, 2, 3, 4) if fields["out_channels"] % heads == 0]),
            "patch_size": rng.choice([1, 1, 3, 4]) if fields["stride"] == 1 else 1,
            "position_embedding": rng.random() < 0.5}


def _derived_widths(rng: random.Random, block: BlockType, in_channels: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Widths that other fields fix: a shuffle unit's even width, a dense stage's growth, inception's sum."""
    match block:
        case BlockType.SHUFFLE:
            return {"out_channels": rng.choice([4, 8, 12, 16, 24])}
        case BlockType.DENSE:
            start = max(1, in_channels // 2) if fields["stride"] == 2 else in_channels
            return {"out_channels": start + fields["num_blocks"] * rng.choice([2, 3, 4, 6])}
        case BlockType.INCEPTION:
            branches = tuple(rng.choice([1, 2, 3, 4, 6, 8]) for _ in range(6))
            one, _, three, _, second, projection = branches
            return {"branches": branches, "out_channels": one + three + second + projection}
    if block in MIXED_LAYOUTS:
        return _mixed_fields(rng, block, in_channels)
    return {}


def _mixed_fields(rng: random.Random, block: BlockType, in_channels: int) -> dict[str, Any]:
    """An Inception-v3 / Inception-ResNet module's conv widths, the width they make (with the input's, for a
    reduction or a residual module), its stride (reductions: one block at stride 2) and residual options."""
    layout = MIXED_LAYOUTS[block]
    branches = tuple(rng.choice([1, 2, 3, 4, 6, 8]) for _ in range(layout.convs))
    fields: dict[str, Any] = {"branches": branches, "out_channels": mixed_output_channels(block, branches, in_channels),
                              "stride": 2 if layout.reduction else 1}
    if layout.reduction:
        fields["num_blocks"] = 1
    if layout.residual:
        fields |= {"residual_scale": rng.choice([0.1, 0.17, 1.0]), "output_activation": rng.random() < 0.7}
    return fields


def random_arch(rng: random.Random, *, scalable: bool = True) -> Arch:
    """A small random architecture: block types, stems and heads, strides, kernels, SE on/off in both styles,
    pools, hidden classifier layers, odd resolutions, 1 or 3 input channels. Draws that do not fit (a resolution
    too small for the stem and the strides) are drawn again.

    ``scalable`` (the default) keeps to what compound scaling takes, since rounding widths to multiples of 8 and
    changing depths keeps it valid: no dense or inception stages, no grouped or unpadded convs, a stem.
    ``scalable=False`` draws from every block type and option."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return _random_arch_once(rng, scalable)
        except SpecError:
            continue
    raise RuntimeError(f"no valid architecture in {MAX_ATTEMPTS} draws")


def _random_arch_once(rng: random.Random, scalable: bool) -> Arch:
    stem = rng.choice([stem for stem in STEM_CHOICES if not scalable or stem is not StemType.NONE])
    blocks = [block for block in BlockType if not scalable or block not in UNSCALABLE_BLOCKS]
    in_channels = rng.choice([1, 3])
    stem_channels = 0 if stem is StemType.NONE else rng.choice([4, 8, 16])
    width = stem_channels or in_channels
    stages = []
    for _ in range(rng.randint(1, 4)):
        stage = random_stage(rng, rng.choice(blocks), width, scalable=scalable)
        stages.append(stage)
        width = stage.out_channels
    head = rng.choice(list(HeadType))
    if head is HeadType.CLASS_TOKEN:  # the head reads the last stage's class token
        stages[-1] = dataclasses.replace(random_stage(rng, BlockType.TRANSFORMER, scalable=scalable), class_token=True)
    uses_se_style = any(stage.block in SE_STYLE_BLOCKS and stage.se_ratio > 0 for stage in stages)
    return Arch(
        stages=tuple(stages),
        stem=stem,
        stem_channels=stem_channels,
        head=head,
        head_channels=rng.choice([16, 32, 64]) if head is HeadType.CONV else 0,
        resolution=rng.choice([17, 23, 32, 33, 40, 47, 64]),
        in_channels=in_channels,
        num_classes=rng.choice([2, 10, 17]),
        activation=rng.choice(list(Activation)),
        dropout=0.1,
        drop_path_rate=rng.choice([0.0, 0.2]),
        se_style=rng.choice(list(SqueezeExciteStyle)) if uses_se_style else SqueezeExciteStyle.EFFICIENTNET,
        classifier_hidden=rng.choice([(), (), (12,), (8, 6)]) if head is not HeadType.CONV_CLASSIFIER else (),
        head_pool_size=rng.choice([1, 1, 2]) if head is HeadType.POOL else 1,
    )


def random_norm(rng: random.Random) -> Norm:
    """Random norm settings, each away from its default half the time (apart from random_arch, whose draws the
    tests rely on staying as they are)."""
    return Norm(batch_norm_eps=rng.choice([1e-5, 1e-3, 2.5e-4]), batch_norm_momentum=rng.choice([0.1, 0.01, 0.0, 1.0]),
                layer_norm_eps=rng.choice([1e-6, 1e-5]), zero_init_last_bn=rng.random() < 0.5)
