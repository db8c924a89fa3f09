"""MnasNet A1 and B1, and MobileNetV2."""

from __future__ import annotations

from nasscale.presets.shorthand import MB, SEP, stage
from nasscale.spec.arch import Arch
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation

# torchvision 0.29.1 models/mnasnet.py:31, _BN_MOMENTUM = 1 - 0.9997 (the paper's TensorFlow decay 0.9997 in torch's
# convention), on every BatchNorm (lines 123-140, and through _stack to 48-56); eps stays torch's. MnasNet-A1 has
# no torchvision model: timm's semnasnet_100 (timm 1.0.31 models/efficientnet.py:540) and MobileNetV2
# (torchvision models/mobilenetv2.py:99) take nn.BatchNorm2d's defaults, the default Norm.
MNASNET_NORM = Norm(batch_norm_momentum=1 - 0.9997)

# ------------------------------------------------------------------------------------ MnasNet, MobileNet


def mnasnet_a1() -> Arch:
    relu = Activation.RELU
    stages = (
        stage(SEP, 1, 3, 1, 16, 1, activation=relu, skip=False),
        stage(MB, 6, 3, 2, 24, 2, activation=relu),
        stage(MB, 3, 5, 2, 40, 3, se=0.25, activation=relu),
        stage(MB, 6, 3, 2, 80, 4, activation=relu),
        stage(MB, 6, 3, 1, 112, 2, se=0.25, activation=relu),
        stage(MB, 6, 5, 2, 160, 3, se=0.25, activation=relu),
        stage(MB, 6, 3, 1, 320, 1, activation=relu),
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, activation=relu, dropout=0.2)


def mnasnet_b1() -> Arch:
    """torchvision's ``mnasnet1_0``: MnasNet-B1, without squeeze-excite."""
    relu = Activation.RELU
    stages = (
        stage(SEP, 1, 3, 1, 16, 1, activation=relu, skip=False),
        stage(MB, 3, 3, 2, 24, 3, activation=relu),
        stage(MB, 3, 5, 2, 40, 3, activation=relu),
        stage(MB, 6, 5, 2, 80, 3, activation=relu),
        stage(MB, 6, 3, 1, 96, 2, activation=relu),
        stage(MB, 6, 5, 2, 192, 4, activation=relu),
        stage(MB, 6, 3, 1, 320, 1, activation=relu),
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, activation=relu, dropout=0.2,
                norm=MNASNET_NORM)


def mobilenet_v2() -> Arch:
    relu6 = Activation.RELU6
    stages = tuple(
        stage(MB, expand, 3, stride, channels, layers, activation=relu6)
        for expand, channels, layers, stride in (
            (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
        )
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, activation=relu6, dropout=0.2)
