"""Reference architectures of the classic families in the spec; ``nasscale.presets.PRESETS`` lists them with the
published numbers they reproduce. Layouts follow torchvision's models (timm's for ResNetV2 and VAN, Hu et al.'s
SE-ResNet, the papers for MobileNetV1 and LeNet-5); RegNets come from their six parameters, not typed in. Each
family's norm settings are its reference's (the ``*_NORM`` constants cite the source line); a family not named there
takes torch's BatchNorm defaults, as its reference does:

- ResNet, ResNeXt: torchvision 0.29.1 models/resnet.py:181 nn.BatchNorm2d, and zero_init_residual=False (line 172),
  so no zero-init; RegNet: models/regnet.py:396 partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1);
  ShuffleNetV2 models/shufflenetv2.py:60-147 and DenseNet models/densenet.py:36-197 nn.BatchNorm2d(c).
- ResNetV2-50: timm 1.0.31 models/resnetv2.py:1115 BatchNormAct2d (layers/norm_act.py:67-68: eps 1e-5, momentum
  0.1), zero_init_last=False (line 549). MobileNetV1: timm models/efficientnet.py:640, nn.BatchNorm2d's defaults.
- VAN-B0: Visual-Attention-Network/VAN-Classification models/van.py (van_tiny): nn.BatchNorm2d(dim) in blocks and
  patch embeddings, partial(nn.LayerNorm, eps=1e-6) after each stage: the default Norm.
- VGG-16 (torchvision's vgg16, without BN), AlexNet, SqueezeNet and LeNet-5 have no norm layers.

Light core: no torch.
"""

from __future__ import annotations

from typing import Any

from nasscale.spec.arch import Arch
from nasscale.spec.norm import DEFAULT_NORM, Norm
from nasscale.spec.regnet import RegNetParameters, regnet_stages
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, Pool, SqueezeExciteStyle, StemType

RELU, HARDSWISH = Activation.RELU, Activation.HARDSWISH

# ------------------------------------------------------------------------------------------------- ResNets

RESNET_WIDTHS = (64, 128, 256, 512)  # per stage; bottleneck stages end 4x wider
# SE-ResNet-50 as our bottleneck builds it (stride in the 3x3) is timm's seresnet50 (timm 1.0.31 models/resnet.py:
# 1926), whose ResNet zero-inits bn3 of each bottleneck by default (zero_init_last=True, line 507; lines 254-257).
SE_RESNET_NORM = Norm(zero_init_last_bn=True)


def _resnet(block: BlockType, depths: tuple[int, ...], *, width_factor: int = 1, bottleneck_ratio: float = 0.25,
            groups: int = 1, stem: StemType = StemType.RESNET, head: HeadType = HeadType.POOL,
            norm: Norm = DEFAULT_NORM) -> Arch:
    stages = tuple(
        Stage(block=block, num_blocks=depth, out_channels=width * width_factor, stride=1 if index == 0 else 2,
              activation=RELU, **_bottleneck_fields(block, bottleneck_ratio, groups))
        for index, (depth, width) in enumerate(zip(depths, RESNET_WIDTHS, strict=True))
    )
    return Arch(stages=stages, stem=stem, stem_channels=64, head=head, head_channels=0, resolution=224,
                activation=RELU, dropout=0.0, norm=norm)


def _bottleneck_fields(block: BlockType, bottleneck_ratio: float, groups: int) -> dict[str, Any]:
    if block in (BlockType.BASIC, BlockType.PREACT_BASIC):
        return {}
    return {"bottleneck_ratio": bottleneck_ratio, "groups": groups}


def resnet18() -> Arch:
    return _resnet(BlockType.BASIC, (2, 2, 2, 2))


def resnet34() -> Arch:
    return _resnet(BlockType.BASIC, (3, 4, 6, 3))


def resnet50() -> Arch:
    return _resnet(BlockType.BOTTLENECK, (3, 4, 6, 3), width_factor=4)


def resnet101() -> Arch:
    return _resnet(BlockType.BOTTLENECK, (3, 4, 23, 3), width_factor=4)


def resnet152() -> Arch:
    return _resnet(BlockType.BOTTLENECK, (3, 8, 36, 3), width_factor=4)


def resnext50_32x4d() -> Arch:
    """32 groups of 4 channels in the first stage: a bottleneck half as wide as the output."""
    return _resnet(BlockType.BOTTLENECK, (3, 4, 6, 3), width_factor=4, bottleneck_ratio=0.5, groups=32)


def se_resnet50() -> Arch:
    """Hu et al.'s SE-ResNet-50: ResNet-50 with SE (reduction 16) on each block's residual branch."""
    return _resnet(BlockType.SE_BOTTLENECK, (3, 4, 6, 3), width_factor=4, norm=SE_RESNET_NORM)


def resnetv2_50() -> Arch:
    """He et al.'s pre-activation ResNet-50 (timm's resnetv2_50): BN and ReLU before each conv, projections
    from the pre-activated input, no norm in the stem, BN + ReLU before the pool."""
    return _resnet(BlockType.PREACT_BOTTLENECK, (3, 4, 6, 3), width_factor=4, stem=StemType.RESNET_PREACT,
                   head=HeadType.PREACT)


# -------------------------------------------------------------------------------------------------- RegNets

# torchvision's parameters (Radosavovic et al.'s released models): depth, w0, wa, wm, group width, SE ratio.
REGNET_PARAMETERS: dict[str, RegNetParameters] = {
    "regnet_x_400mf": RegNetParameters(depth=22, w0=24, wa=24.48, wm=2.54, group_width=16),
    "regnet_y_400mf": RegNetParameters(depth=16, w0=48, wa=27.89, wm=2.09, group_width=8, se_ratio=0.25),
    "regnet_y_800mf": RegNetParameters(depth=14, w0=56, wa=38.84, wm=2.4, group_width=16, se_ratio=0.25),
    "regnet_y_1_6gf": RegNetParameters(depth=27, w0=48, wa=20.71, wm=2.65, group_width=24, se_ratio=0.25),
}
REGNET_STEM = 32


def regnet(name: str) -> Arch:
    return Arch(stages=regnet_stages(REGNET_PARAMETERS[name]), stem_channels=REGNET_STEM, head=HeadType.POOL,
                head_channels=0, resolution=224, activation=RELU, dropout=0.0)


# ------------------------------------------------------------------------------------------------ MobileNets


def _bneck(expand: float, kernel: int, stride: int, channels: int, layers: int, se: bool,
           activation: Activation) -> Stage:
    return Stage(block=BlockType.MBCONV, num_blocks=layers, out_channels=channels, stride=stride, kernel_size=kernel,
                 expand_ratio=expand, se_ratio=0.25 if se else 0.0, activation=activation)


# torchvision 0.29.1 models/mobilenetv3.py:155: norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01).
MOBILENET_V3_NORM = Norm(batch_norm_eps=1e-3, batch_norm_momentum=0.01)


def _mobilenet_v3(stages: tuple[Stage, ...], head_channels: int, hidden: int) -> Arch:
    return Arch(stages=stages, stem_channels=16, head_channels=head_channels, resolution=224, activation=HARDSWISH,
                dropout=0.2, se_style=SqueezeExciteStyle.MOBILENET_V3, classifier_hidden=(hidden,),
                norm=MOBILENET_V3_NORM)


def mobilenet_v3_large() -> Arch:
    """Howard et al.'s Table 1; a stage per run of identical bneck rows. Expansion = expanded / input width (e.g.
    200 / 80 = 2.5); SE squeezes a quarter of the expanded width, made divisible by 8 (the mobilenet_v3 style)."""
    return _mobilenet_v3((
        _bneck(1, 3, 1, 16, 1, False, RELU),
        _bneck(4, 3, 2, 24, 1, False, RELU),
        _bneck(3, 3, 1, 24, 1, False, RELU),
        _bneck(3, 5, 2, 40, 3, True, RELU),
        _bneck(6, 3, 2, 80, 1, False, HARDSWISH),
        _bneck(200 / 80, 3, 1, 80, 1, False, HARDSWISH),
        _bneck(184 / 80, 3, 1, 80, 2, False, HARDSWISH),
        _bneck(6, 3, 1, 112, 2, True, HARDSWISH),
        _bneck(6, 5, 2, 160, 3, True, HARDSWISH),
    ), head_channels=960, hidden=1280)


def mobilenet_v3_small() -> Arch:
    return _mobilenet_v3((
        _bneck(1, 3, 2, 16, 1, True, RELU),
        _bneck(72 / 16, 3, 2, 24, 1, False, RELU),
        _bneck(88 / 24, 3, 1, 24, 1, False, RELU),
        _bneck(4, 5, 2, 40, 1, True, HARDSWISH),
        _bneck(6, 5, 1, 40, 2, True, HARDSWISH),
        _bneck(3, 5, 1, 48, 2, True, HARDSWISH),
        _bneck(6, 5, 2, 96, 3, True, HARDSWISH),
    ), head_channels=576, hidden=1024)


def mobilenet_v1() -> Arch:
    """Howard et al. 2017, Table 1 at width 1.0: 13 depthwise-separable layers after a 3x3 stride-2 conv."""
    stages = tuple(
        Stage(block=BlockType.DEPTHWISE_SEPARABLE, num_blocks=layers, out_channels=channels, stride=stride,
              activation=RELU)
        for channels, stride, layers in ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 2, 6), (1024, 2, 2))
    )
    return Arch(stages=stages, stem_channels=32, head=HeadType.POOL, head_channels=0, resolution=224,
                activation=RELU, dropout=0.0)


def shufflenet_v2_x1_0() -> Arch:
    stages = tuple(Stage(block=BlockType.SHUFFLE, num_blocks=layers, out_channels=channels, stride=2, activation=RELU)
                   for channels, layers in ((116, 4), (232, 8), (464, 4)))
    return Arch(stages=stages, stem=StemType.CONV_POOL, stem_channels=24, head_channels=1024, resolution=224,
                activation=RELU, dropout=0.0)


# ------------------------------------------------------------------------------- DenseNet, GoogLeNet, SqueezeNet


def densenet121() -> Arch:
    """Growth rate 32 (each stage's width = its input, halved by the transition, + 32 per layer), bn_size 4."""
    stages = tuple(
        Stage(block=BlockType.DENSE, num_blocks=layers, out_channels=channels, stride=1 if index == 0 else 2,
              expand_ratio=4, activation=RELU)
        for index, (layers, channels) in enumerate(((6, 256), (12, 512), (24, 1024), (16, 1024)))
    )
    return Arch(stages=stages, stem=StemType.RESNET, stem_channels=64, head=HeadType.PREACT, head_channels=0,
                resolution=224, activation=RELU, dropout=0.0)


# GoogLeNet's inception modules (Szegedy et al., Table 1): name, stride (a pool before it), pool, branch widths.
GOOGLENET_MODULES = (
    ("3a", 2, Pool.MAX3_CEIL, (64, 96, 128, 16, 32, 32)),
    ("3b", 1, Pool.MAX2, (128, 128, 192, 32, 96, 64)),
    ("4a", 2, Pool.MAX3_CEIL, (192, 96, 208, 16, 48, 64)),
    ("4b", 1, Pool.MAX2, (160, 112, 224, 24, 64, 64)),
    ("4c", 1, Pool.MAX2, (128, 128, 256, 24, 64, 64)),
    ("4d", 1, Pool.MAX2, (112, 144, 288, 32, 64, 64)),
    ("4e", 1, Pool.MAX2, (256, 160, 320, 32, 128, 128)),
    ("5a", 2, Pool.MAX2_CEIL, (256, 160, 320, 32, 128, 128)),
    ("5b", 1, Pool.MAX2, (384, 192, 384, 48, 128, 128)),
)


# torchvision 0.29.1 models/googlenet.py:270: every BasicConv2d (stem, convs, inception branches) has
# nn.BatchNorm2d(out_channels, eps=0.001).
GOOGLENET_NORM = Norm(batch_norm_eps=1e-3)


def googlenet() -> Arch:
    """torchvision's googlenet without auxiliary heads: its "5x5" branches are 3x3 convs (kernel_size 3)."""
    convs = (Stage(block=BlockType.CONV, num_blocks=1, out_channels=64, stride=1, kernel_size=1, activation=RELU,
                   skip=False),
             Stage(block=BlockType.CONV, num_blocks=1, out_channels=192, stride=1, activation=RELU, skip=False))
    modules = tuple(
        Stage(block=BlockType.INCEPTION, num_blocks=1, out_channels=branches[0] + branches[2] + branches[4]
              + branches[5], stride=stride, pool=pool, branches=branches, activation=RELU)
        for _, stride, pool, branches in GOOGLENET_MODULES
    )
    return Arch(stages=convs + modules, stem=StemType.GOOGLENET, stem_channels=64, head=HeadType.POOL,
                head_channels=0, resolution=224, activation=RELU, dropout=0.2, norm=GOOGLENET_NORM)


def _fire(channels: int, layers: int, stride: int) -> Stage:
    pool = Pool.MAX3_CEIL if stride == 2 else Pool.MAX2
    return Stage(block=BlockType.FIRE, num_blocks=layers, out_channels=channels, stride=stride,
                 bottleneck_ratio=0.125, pool=pool, activation=RELU)


def _squeezenet(stem: StemType, stem_channels: int, stages: tuple[Stage, ...]) -> Arch:
    return Arch(stages=stages, stem=stem, stem_channels=stem_channels, head=HeadType.CONV_CLASSIFIER,
                head_channels=0, resolution=224, activation=RELU, dropout=0.5)


def squeezenet1_0() -> Arch:
    """Fire modules squeeze to 1/8 of their output; the 1x1 and 3x3 expands each give half."""
    return _squeezenet(StemType.SQUEEZENET_1_0, 96, (
        _fire(128, 2, 1), _fire(256, 1, 1), _fire(256, 1, 2), _fire(384, 2, 1), _fire(512, 1, 1), _fire(512, 1, 2)))


def squeezenet1_1() -> Arch:
    return _squeezenet(StemType.SQUEEZENET_1_1, 64, (
        _fire(128, 2, 1), _fire(256, 2, 2), _fire(384, 2, 2), _fire(512, 2, 1)))


# ----------------------------------------------------------------------------------- VGG, AlexNet, LeNet, VAN


def _plain(channels: int, layers: int, *, kernel: int = 3, stride: int = 2, pool: Pool = Pool.MAX2,
           same_padding: bool = True) -> Stage:
    return Stage(block=BlockType.PLAIN, num_blocks=layers, out_channels=channels, stride=stride, kernel_size=kernel,
                 pool=pool if stride == 2 else Pool.MAX2, same_padding=same_padding, activation=RELU)


def vgg16() -> Arch:
    """Configuration D: five stages of 3x3 convs, each closed by a 2x2 max pool; 7x7 pooled features into two
    4096-wide hidden layers."""
    stages = tuple(_plain(channels, layers) for channels, layers in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)))
    return Arch(stages=stages, stem=StemType.NONE, stem_channels=0, head=HeadType.POOL, head_channels=0,
                resolution=224, activation=RELU, dropout=0.5, classifier_hidden=(4096, 4096), head_pool_size=7)


def alexnet() -> Arch:
    """torchvision's (one-GPU) AlexNet. Its classifier drops out before each hidden layer where ours drops after
    it; the counts are the same."""
    stages = (_plain(192, 1, kernel=5, pool=Pool.MAX3), _plain(384, 1, stride=1), _plain(256, 2, pool=Pool.MAX3))
    return Arch(stages=stages, stem=StemType.ALEXNET, stem_channels=64, head=HeadType.POOL, head_channels=0,
                resolution=224, activation=RELU, dropout=0.5, classifier_hidden=(4096, 4096), head_pool_size=6)


def lenet5() -> Arch:
    """LeNet-5 as commonly re-implemented on 32x32 grey images: C1 6@5x5 unpadded, 2x2 average pool, C3 16@5x5
    connected to every S2 map, 2x2 average pool, C5 120 (a 5x5 conv on a 5x5 map: a linear layer), F6 84, 10
    outputs, ReLU. LeCun et al.'s sparse C3, trainable subsampling, scaled tanh and RBF outputs are not kept."""
    stages = (_plain(6, 1, kernel=5, pool=Pool.AVG2, same_padding=False),
              _plain(16, 1, kernel=5, pool=Pool.AVG2, same_padding=False))
    return Arch(stages=stages, stem=StemType.NONE, stem_channels=0, head=HeadType.POOL, head_channels=0,
                resolution=32, in_channels=1, num_classes=10, activation=RELU, dropout=0.0,
                classifier_hidden=(120, 84), head_pool_size=5)


def van_b0() -> Arch:
    """Guo et al.'s VAN-B0: widths 32, 64, 160, 256, depths 3, 3, 5, 2, MLP ratios 8, 8, 4, 4."""
    stages = tuple(
        Stage(block=BlockType.VAN, num_blocks=depth, out_channels=width, stride=1 if index == 0 else 2,
              expand_ratio=ratio, activation=Activation.GELU)
        for index, (width, depth, ratio) in enumerate(((32, 3, 8), (64, 3, 8), (160, 5, 4), (256, 2, 4)))
    )
    return Arch(stages=stages, stem=StemType.OVERLAPPING_PATCHIFY, stem_channels=32, head=HeadType.POOL,
                head_channels=0, resolution=224, activation=Activation.GELU, dropout=0.0, drop_path_rate=0.1)
