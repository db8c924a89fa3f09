"""Backbones: a network's feature maps at the end of chosen stages (``build(arch, features_only=True,
out_indices=...)``, timm's ``features_only``), listed in ``feature_info`` with their channels and strides, for a
detector or a segmentation decoder.

``FeatureNetwork`` keeps the network's stem and its stages up to the last one asked for, under the same names
(``stem``, ``stages.I``), so a classifier's weights (``nasscale weights import``, ``nasscale train``) load into it
with only the head left over. ``PyramidBackbone`` adds torchvision's feature pyramid for its ``FasterRCNN``,
``RetinaNet`` or ``MaskRCNN``; torchvision is imported only there.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from nasscale.errors import SpecError
from nasscale.spec.arch import Arch, placed_stages

# The resolution strides are read at: every downsampling halves it exactly (or nearly, where a layer pads nothing or
# pools in ceil mode), so the ratio rounds to the nominal stride, timm's "reduction".
STRIDE_PROBE_RESOLUTION = 1024


@dataclass(frozen=True, slots=True)
class FeatureInfo:
    """One output of a backbone: the stage it ends, its width, and how much smaller than the input it is."""

    stage: int
    channels: int
    stride: int
    module: str  # its module path, as torchvision's return_layers and timm's feature_info name it


def stage_strides(arch: Arch) -> list[int]:
    """Each stage's output stride (input size / output size, a power of two), whatever its block type."""
    probe = arch.replace(resolution=STRIDE_PROBE_RESOLUTION)
    return [2 ** round(math.log2(STRIDE_PROBE_RESOLUTION / size)) for _, size in placed_stages(probe)]


def default_out_indices(arch: Arch) -> tuple[int, ...]:
    """The last stage at each stride (timm's feature levels): where a detector or a U-Net takes its features."""
    strides = stage_strides(arch)
    return tuple(index for index, stride in enumerate(strides)
                 if index == len(strides) - 1 or strides[index + 1] != stride)


def resolve_out_indices(arch: Arch, out_indices: Sequence[int] | None) -> tuple[int, ...]:
    """``out_indices`` as stage numbers in increasing order (negative ones count from the end, as in timm); an index
    out of range, a repeat or a non-integer is one ``SpecError``."""
    if out_indices is None:
        return default_out_indices(arch)
    count = len(arch.stages)
    if isinstance(out_indices, str | bytes) or not isinstance(out_indices, Sequence) or not out_indices:
        raise SpecError("out_indices", f"must be a non-empty list of stage numbers, got {out_indices!r}")
    resolved = []
    for value in out_indices:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError("out_indices", f"must hold integers, got {value!r}")
        if not -count <= value < count:
            raise SpecError("out_indices", f"{value} is out of range: the network has {count} stages (0 to "
                                           f"{count - 1}, or -{count} to -1 from the end)")
        resolved.append(value % count)
    if len(set(resolved)) != len(resolved):
        raise SpecError("out_indices", f"names a stage twice: {list(out_indices)}")
    return tuple(sorted(resolved))


class Classifier(Protocol):
    """What a backbone takes from ``build(arch)``'s Network (named here, not imported: build imports this module)."""

    arch: Arch
    stem: nn.Module
    stages: nn.Sequential


class FeatureNetwork(nn.Module):
    """The stem and stages of ``network`` (a ``build(arch)`` model, shared, not copied) up to the last of
    ``out_indices``; ``forward`` returns the maps at the end of those stages, shallowest first."""

    def __init__(self, network: Classifier, out_indices: Sequence[int] | None = None):
        super().__init__()
        arch = network.arch
        self.arch = arch
        self.out_indices = resolve_out_indices(arch, out_indices)
        strides = stage_strides(arch)
        self.feature_info = tuple(FeatureInfo(index, arch.stages[index].out_channels, strides[index],
                                              f"stages.{index}") for index in self.out_indices)
        self.stem = network.stem
        stages = network.stages
        self.stages = nn.Sequential(*(stages[index] for index in range(self.out_indices[-1] + 1)))

    @property
    def out_channels(self) -> list[int]:
        return [info.channels for info in self.feature_info]

    @property
    def strides(self) -> list[int]:
        return [info.stride for info in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.out_indices:
                features.append(x)
        return features


class PyramidBackbone(nn.Module):
    """A backbone's maps through a feature pyramid (``pyramid(features: OrderedDict) -> OrderedDict``), with the
    ``out_channels`` attribute torchvision's detectors read: what ``BackboneWithFPN`` builds from a torchvision
    classifier, built from ours."""

    def __init__(self, features: FeatureNetwork, pyramid: nn.Module, out_channels: int):
        super().__init__()
        self.body = features
        self.fpn = pyramid
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = OrderedDict((str(number), tensor) for number, tensor in enumerate(self.body(x)))
        return self.fpn(maps)


def pyramid_backbone(features: FeatureNetwork, out_channels: int = 256) -> PyramidBackbone:
    """``features`` under torchvision's ``FeaturePyramidNetwork`` (with its extra max-pooled level, as
    ``resnet_fpn_backbone`` has), ready for ``torchvision.models.detection.FasterRCNN(backbone, num_classes)``."""
    from torchvision.ops.feature_pyramid_network import (  # optional: only a detector needs torchvision
        FeaturePyramidNetwork,
        LastLevelMaxPool,
    )

    pyramid = FeaturePyramidNetwork(features.out_channels, out_channels, extra_blocks=LastLevelMaxPool())
    return PyramidBackbone(features, pyramid, out_channels)
