"""ConvNeXt T, S, B and L: a patchify stem, four ConvNeXt stages and a norm head."""

from __future__ import annotations

from nasscale.presets.shorthand import CONVNEXT, stage
from nasscale.spec.arch import Arch
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation, HeadType, StemType

# ---------------------------------------------------------------------------------------------- ConvNeXt

# torchvision 0.29.1 models/convnext.py: partial(nn.LayerNorm, eps=1e-6) in each block (line 49) and
# partial(LayerNorm2d, eps=1e-6) in the stem, the downsampling layers and the head (lines 114, 148, 161). That is
# the default Norm's LayerNorm eps, so the presets' arch_ids do not name it; written out to say where it comes from.
CONVNEXT_NORM = Norm(layer_norm_eps=1e-6)


def _convnext(depths: tuple[int, ...], widths: tuple[int, ...], drop_path_rate: float) -> Arch:
    stages = tuple(
        stage(CONVNEXT, 4, 7, 1 if index == 0 else 2, width, depth, activation=Activation.GELU)
        for index, (depth, width) in enumerate(zip(depths, widths, strict=True))
    )
    return Arch(stages=stages, stem=StemType.PATCHIFY, stem_channels=widths[0], head=HeadType.NORM,
                head_channels=0, resolution=224, dropout=0.0, drop_path_rate=drop_path_rate,
                activation=Activation.GELU, norm=CONVNEXT_NORM)


def convnext_tiny() -> Arch:
    return _convnext((3, 3, 9, 3), (96, 192, 384, 768), 0.1)


def convnext_small() -> Arch:
    return _convnext((3, 3, 27, 3), (96, 192, 384, 768), 0.4)


def convnext_base() -> Arch:
    return _convnext((3, 3, 27, 3), (128, 256, 512, 1024), 0.5)


def convnext_large() -> Arch:
    return _convnext((3, 3, 27, 3), (192, 384, 768, 1536), 0.5)
