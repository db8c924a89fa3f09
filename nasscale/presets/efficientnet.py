"""EfficientNet B0-B7 (B1-B7 derived from B0 with the released coefficients through the scaling rules) and
EfficientNetV2 S, M and L, with torchvision's BatchNorm settings.
"""

from __future__ import annotations

from nasscale.presets.shorthand import FUSED, MB, stage
from nasscale.spec.arch import Arch
from nasscale.spec.norm import Norm
from nasscale.spec.rescaling import scale_arch
from nasscale.spec.vocabulary import BlockType

# ------------------------------------------------------------------------------------------ EfficientNet

# torchvision 0.29.1 models/efficientnet.py: B0-B4 take EfficientNet's default nn.BatchNorm2d (line 266, their
# builders at 771-900 pass no norm_layer); B5-B7, whose weights were ported from TensorFlow, take
# partial(nn.BatchNorm2d, eps=0.001, momentum=0.01) (lines 942, 979, 1016); V2 S/M/L partial(nn.BatchNorm2d,
# eps=1e-03) (lines 1054, 1092, 1130).
EFFICIENTNET_TF_NORM = Norm(batch_norm_eps=1e-3, batch_norm_momentum=0.01)
EFFICIENTNETV2_NORM = Norm(batch_norm_eps=1e-3)
TF_NORM_VARIANTS = frozenset({"efficientnet_b5", "efficientnet_b6", "efficientnet_b7"})


def efficientnet_b0() -> Arch:
    stages = tuple(
        stage(MB, expand, kernel, stride, channels, layers, se=0.25)
        for expand, kernel, stride, channels, layers in (
            (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
            (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
        )
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, dropout=0.2,
                drop_path_rate=0.2)


# The released coefficients (width, depth, resolution, dropout), rounded by hand in the paper's code.
EFFICIENTNET_COEFFICIENTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}


def scaled_efficientnet(name: str) -> Arch:
    width, depth, resolution, dropout = EFFICIENTNET_COEFFICIENTS[name]
    scaled = scale_arch(efficientnet_b0(), width=width, depth=depth, resolution=resolution)
    return scaled.replace(dropout=dropout, norm=EFFICIENTNET_TF_NORM if name in TF_NORM_VARIANTS else scaled.norm)


def _efficientnetv2(stem: int, rows: tuple[tuple[BlockType, float, int, int, int], ...], resolution: int,
                    dropout: float) -> Arch:
    stages = tuple(
        stage(block, expand, 3, stride, channels, layers, se=0.25 if block is MB else 0.0)
        for block, expand, stride, channels, layers in rows
    )
    return Arch(stages=stages, stem_channels=stem, head_channels=1280, resolution=resolution, dropout=dropout,
                drop_path_rate=0.2, norm=EFFICIENTNETV2_NORM)


def efficientnetv2_s() -> Arch:
    return _efficientnetv2(24, (
        (FUSED, 1, 1, 24, 2), (FUSED, 4, 2, 48, 4), (FUSED, 4, 2, 64, 4),
        (MB, 4, 2, 128, 6), (MB, 6, 1, 160, 9), (MB, 6, 2, 256, 15),
    ), resolution=384, dropout=0.2)


def efficientnetv2_m() -> Arch:
    return _efficientnetv2(24, (
        (FUSED, 1, 1, 24, 3), (FUSED, 4, 2, 48, 5), (FUSED, 4, 2, 80, 5),
        (MB, 4, 2, 160, 7), (MB, 6, 1, 176, 14), (MB, 6, 2, 304, 18), (MB, 6, 1, 512, 5),
    ), resolution=480, dropout=0.3)


def efficientnetv2_l() -> Arch:
    return _efficientnetv2(32, (
        (FUSED, 1, 1, 32, 4), (FUSED, 4, 2, 64, 7), (FUSED, 4, 2, 96, 7),
        (MB, 4, 2, 192, 10), (MB, 6, 1, 224, 19), (MB, 6, 2, 384, 25), (MB, 6, 1, 640, 7),
    ), resolution=480, dropout=0.4)
