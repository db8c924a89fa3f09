"""What a family's name mapping is written in: ``Rule`` pairs one of our modules with the reference's module that
holds the same tensors; ``our_stages`` says where each stage and block of an ``Arch`` sits in ``build(arch)``, so that
the rules of ``torchvision_rules`` and ``timm_rules`` are written by walking the architecture, module to module,
by name, never by position in a state dict. ``transfer`` applies them to tensors.

No torch in this module (the package's __init__ imports it, for transfer and files).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from nasscale.spec.arch import Arch, BlockPlacement, StagePlacement, iter_stages, stage_blocks
from nasscale.spec.channels import expanded_channels
from nasscale.spec.inception import INCEPTION_STEM, MIXED_LAYOUTS
from nasscale.spec.vocabulary import BlockType, HeadType


class TensorLayout(StrEnum):
    """How a tensor of theirs holds one of ours where the shapes differ (the values and their order never do)."""

    SAME = "same"
    FLAT = "flat"  # flattened to one dimension: timm's ConvNeXt gamma is (C,), our layer_scale (C, 1, 1) for NCHW
    POINTWISE = "pointwise"  # our linear layer is their 1x1 conv: timm's ResNetV2 head.fc weight is (K, C, 1, 1)


@dataclass(frozen=True, slots=True)
class Rule:
    """Our module ``ours`` holds the tensors of the reference's module ``theirs`` (dotted paths of
    ``named_modules``), under the same tensor names unless ``renames`` says otherwise (ours, theirs).

    ``ours`` may instead name one tensor that its module holds itself (a ViT's class token, a path of
    ``state_dict``): ``theirs`` then names their tensor, wherever it sits (torchvision's ``class_token`` on the top
    module and ``encoder.pos_embedding``, both held by our patch embedding), and ``renames`` does not apply."""

    ours: str
    theirs: str
    renames: tuple[tuple[str, str], ...] = ()
    layout: TensorLayout = TensorLayout.SAME


class StagePaths(NamedTuple):
    """Where a stage of ours sits in our model: its opening layer's path (None without one), its blocks' paths, its
    closing layer's path (None without one), and its placement (widths, strides) with its blocks'."""

    placement: StagePlacement
    transition: str | None
    blocks: tuple[tuple[str, BlockPlacement], ...]
    closing: str | None


def our_stages(arch: Arch) -> list[StagePaths]:
    """Each stage's module paths in ``build(arch)`` (``Network``: ``stages.I`` holds the opening layer, the blocks
    and the closing layer, in that order)."""
    stages = []
    for placement in iter_stages(arch):
        prefix = f"stages.{placement.index}"
        offset = 1 if placement.has_transition else 0
        blocks = tuple((f"{prefix}.{offset + number}", block)
                       for number, block in enumerate(stage_blocks(placement)))
        closing = placement.has_closing_pool or placement.stage.block is BlockType.VAN
        stages.append(StagePaths(placement, f"{prefix}.0" if offset else None, blocks,
                                 f"{prefix}.{offset + len(blocks)}" if closing else None))
    return stages


def has_expand(block: BlockPlacement) -> bool:
    """Whether an mbconv or fused_mbconv block has its expansion layer (it is left out at expansion 1)."""
    return expanded_channels(block.in_channels, block.stage.expand_ratio) != block.in_channels


def has_squeeze_excite(block: BlockPlacement) -> bool:
    return block.stage.se_ratio > 0


def classifier_module(arch: Arch) -> str:
    """Our module that maps features to classes: the head's linear layer, or SqueezeNet's 1x1 conv."""
    return "head.conv.1" if arch.head is HeadType.CONV_CLASSIFIER else "head.classifier"


def conv_norm(ours: str, theirs_conv: str, theirs_norm: str) -> list[Rule]:
    """Our ConvNormAct (``ours.0`` the conv, ``ours.1`` the BatchNorm) onto two modules of theirs."""
    return [Rule(f"{ours}.0", theirs_conv), Rule(f"{ours}.1", theirs_norm)]


def squeeze_excite(ours: str, theirs: str, reduce: str = "fc1", expand: str = "fc2") -> list[Rule]:
    """Our SqueezeExcite's 1x1 convs (``reduce``, ``expand``) onto theirs (torchvision's fc1 and fc2)."""
    return [Rule(f"{ours}.reduce", f"{theirs}.{reduce}"), Rule(f"{ours}.expand", f"{theirs}.{expand}")]


# ------------------------------------------------------------------------------------------------- Inception


class MixedConv(NamedTuple):
    """One BasicConv2d of an Inception module of ours (``path``: a Sequential of the conv ``.0`` and the BatchNorm
    ``.1``): its branch, the index of its layer in the branch's Sequential (after the pool, if the branch has one),
    its index among the convs of a layer of several (Inception-v3's split 1x3 and 3x1; None in a layer of one),
    and whether it is its branch's only layer (timm registers such a branch as the BasicConv2d itself)."""

    path: str
    branch: int
    layer: int
    part: int | None
    alone: bool


def mixed_convs(ours: str, block: BlockPlacement) -> list[MixedConv]:
    """The BasicConv2d layers of our Inception module at ``ours`` (``MixedBlock``: ``branches.parts.{b}`` a
    Sequential of the branch's pool, if any, then its layers; a layer of several convs a ``Concatenated``), in the
    order of the layout (``nasscale.spec.inception``), which is the order both references declare them in. Empty
    for a block of another kind, whose tensors no rule then names: tensor_pairs reports the first."""
    layout = MIXED_LAYOUTS.get(block.stage.block)
    if layout is None:
        return []
    convs = []
    for number, branch in enumerate(layout.branches):
        offset = 1 if branch.pool else 0
        alone = not branch.pool and len(branch.layers) == 1 and len(branch.layers[0]) == 1
        for index, layer in enumerate(branch.layers, start=offset):
            path = f"{ours}.branches.parts.{number}.{index}"
            if len(layer) == 1:
                convs.append(MixedConv(path, number, index, None, alone))
            else:
                convs += [MixedConv(f"{path}.parts.{part}", number, index, part, False) for part in range(len(layer))]
    return convs


def inception_stem_convs() -> list[tuple[str, str]]:
    """Our Inception stem's (conv, BatchNorm) paths, layer by layer (``stem`` is one Sequential: conv, BatchNorm,
    ReLU, and a max pool after some; torchvision's Conv2d_1a_3x3 to Conv2d_4a_3x3, timm's conv2d_1a to conv2d_4a)."""
    paths, index = [], 0
    for layer in INCEPTION_STEM:
        paths.append((f"stem.{index}", f"stem.{index + 1}"))
        index += 3 + layer.pool_after
    return paths
