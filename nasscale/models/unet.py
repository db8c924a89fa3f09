"""A thin U-Net on any backbone: a searched, scaled or preset architecture's feature maps (``FeatureNetwork``)
decoded back to the input's size for per-pixel classes (Ronneberger et al. 2015, with a pretrained encoder as in
segmentation_models_pytorch's ``Unet``).

The decoder starts at the deepest map; at each shallower one it upsamples (bilinear) to that map's size,
concatenates it and applies two 3x3 conv + BatchNorm + ReLU; the last map is upsampled to the input and a 1x1
conv gives the class logits. Deliberately small: the encoder is the part worth searching and pretraining.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.errors import SpecError
from nasscale.models.build import build
from nasscale.models.features import FeatureNetwork
from nasscale.spec.arch import Arch


def _conv_norm_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class DecoderStage(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two conv + BN + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.convs = nn.Sequential(_conv_norm_relu(in_channels + skip_channels, out_channels),
                                   _conv_norm_relu(out_channels, out_channels))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat((x, skip), dim=1))


class UNet(nn.Module):
    """``encoder``'s maps, shallowest first, decoded to (N, num_classes, H, W) logits at the input's size.
    ``decoder_channels`` are the widths of the decoder stages, deepest first (default: the encoder's widths of the
    maps each stage joins)."""

    def __init__(self, encoder: FeatureNetwork, num_classes: int, *, decoder_channels: Sequence[int] | None = None):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise SpecError("num_classes", f"must be a positive integer, got {num_classes!r}")
        skips = encoder.out_channels[-2::-1]  # the maps the decoder joins, deepest first
        widths = list(decoder_channels) if decoder_channels is not None else skips or [encoder.out_channels[-1]]
        if len(widths) != max(1, len(skips)) or any(isinstance(width, bool) or not isinstance(width, int)
                                                    or width < 1 for width in widths):
            raise SpecError("decoder_channels", f"must be {max(1, len(skips))} positive widths (one per map the "
                                                f"decoder joins), got {list(widths)}")
        self.encoder = encoder
        in_channels = encoder.out_channels[-1]
        stages = []
        for skip, width in zip(skips, widths, strict=False):
            stages.append(DecoderStage(in_channels, skip, width))
            in_channels = width
        self.decoder = nn.ModuleList(stages)
        # One map only: a conv stage on it alone, so that the decoder has something to learn.
        self.refine = _conv_norm_relu(in_channels, widths[-1]) if not skips else nn.Identity()
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        *skips, deepest = self.encoder(x)
        out = deepest
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            out = stage(out, skip)
        out = self.classifier(self.refine(out))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def unet(arch: Arch, num_classes: int, *, out_indices: Sequence[int] | None = None,
         decoder_channels: Sequence[int] | None = None) -> UNet:
    """A U-Net whose encoder is ``build(arch, features_only=True, out_indices=out_indices)``. For a pretrained
    encoder, build the ``FeatureNetwork`` from the loaded classifier instead and pass it to ``UNet``."""
    return UNet(build(arch, features_only=True, out_indices=out_indices), num_classes,
                decoder_channels=decoder_channels)
