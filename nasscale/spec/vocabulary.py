"""The words of the architecture spec: block types, activations, stems, heads, pools and squeeze-excite
styles as string enums, which ``Stage`` fields apply to which block type, each block type's default
activation, and the fixed layouts of the stems and the pools. Tables only; the rules that use them live in
``channels``, ``geometry`` and ``arch``.

Light core: no torch, no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BlockType(StrEnum):
    MBCONV = "mbconv"  # inverted residual: 1x1 expand, kxk depthwise, SE, 1x1 project
    FUSED_MBCONV = "fused_mbconv"  # kxk expand conv, SE, 1x1 project (one kxk conv at expansion 1)
    SEPCONV = "sepconv"  # depthwise-separable: kxk depthwise, SE, 1x1 project
    CONV = "conv"  # one regular kxk convolution (MnasNet's "conv" op)
    CONVNEXT = "convnext"  # kxk depthwise, LayerNorm, MLP, layer scale
    BASIC = "basic"  # ResNet: two kxk convs; shortcut, a 1x1 projection where the shape changes
    BOTTLENECK = "bottleneck"  # ResNet/ResNeXt/RegNet: 1x1 reduce, grouped kxk, SE (RegNetY), 1x1 expand
    SE_BOTTLENECK = "se_bottleneck"  # SE-ResNet: bottleneck, then SE (reduction 16) before the addition
    PREACT_BASIC = "preact_basic"  # ResNetV2: BN and activation before each conv, none after the addition
    PREACT_BOTTLENECK = "preact_bottleneck"
    DEPTHWISE_SEPARABLE = "depthwise_separable"  # MobileNetV1: kxk depthwise, BN, act, 1x1, BN, act
    SHUFFLE = "shuffle"  # ShuffleNetV2 unit: split (or two branches), concatenate, channel shuffle
    DENSE = "dense"  # DenseNet-BC layer: BN-act-1x1-BN-act-kxk, its output concatenated to its input
    INCEPTION = "inception"  # GoogLeNet module: 1x1, 1x1-3x3, 1x1-kxk and pool-1x1 branches concatenated
    FIRE = "fire"  # SqueezeNet: 1x1 squeeze, then 1x1 and kxk expands concatenated
    PLAIN = "plain"  # kxk conv with bias and activation, no norm (VGG, AlexNet, LeNet)
    VAN = "van"  # VAN: BN, large-kernel attention, residual; BN, MLP with a 3x3 depthwise conv, residual
    # Pre-norm transformer encoder layer over the positions of the map (ViT; CoAtNet/MobileViT's attention stages):
    # LayerNorm, multi-head self-attention, residual; LayerNorm, MLP, residual. See nasscale.spec.attention_cost.
    TRANSFORMER = "transformer"
    # Inception-v3's modules (torchvision InceptionA-E) and Inception-ResNet-v2's (timm Mixed_5b, Block35, Block17,
    # Block8, Mixed_7a; its Mixed_6a is inception_v3_b's layout): branches of convs concatenated, the residual ones then
    # a 1x1 conv back to the input width, scaled by residual_scale and added. Layouts in nasscale.spec.inception.
    INCEPTION_V3_A = "inception_v3_a"  # 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1
    INCEPTION_V3_B = "inception_v3_b"  # reduction: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2 (the input passes)
    INCEPTION_V3_C = "inception_v3_c"  # 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg pool-1x1
    INCEPTION_V3_D = "inception_v3_d"  # reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2
    INCEPTION_V3_E = "inception_v3_e"  # 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | avg pool-1x1
    INCEPTION_RESNET_MIXED_5B = "inception_resnet_mixed_5b"  # inception_v3_a, its pool not counting the padding
    INCEPTION_RESNET_A = "inception_resnet_a"  # Block35: 1x1 | 1x1-3x3 | 1x1-3x3-3x3, residual
    INCEPTION_RESNET_B = "inception_resnet_b"  # Block17: 1x1 | 1x1-1x7-7x1, residual
    INCEPTION_RESNET_C = "inception_resnet_c"  # Block8: 1x1 | 1x1-1x3-3x1, residual
    INCEPTION_RESNET_REDUCTION_B = "inception_resnet_reduction_b"  # Mixed_7a: 1x1-3x3/2 | 1x1-3x3/2 |
    #                                                                1x1-3x3-3x3/2 | max pool/2


class Activation(StrEnum):
    RELU = "relu"
    RELU6 = "relu6"
    SILU = "silu"
    HARDSWISH = "hardswish"
    GELU = "gelu"


# Names users may write for an activation; "swish" is SiLU under its EfficientNet name.
ACTIVATION_ALIASES = {"swish": Activation.SILU}


class StemType(StrEnum):
    CONV = "conv"  # 3x3 stride-2 conv, BatchNorm, activation (EfficientNet, MobileNet, MnasNet, RegNet)
    PATCHIFY = "patchify"  # 4x4 stride-4 conv with bias, LayerNorm (ConvNeXt)
    RESNET = "resnet"  # 7x7 stride-2 conv, BN, activation, 3x3 stride-2 max pool (ResNet, DenseNet)
    RESNET_PREACT = "resnet_preact"  # the same without BN and activation: the first block pre-activates
    CONV_POOL = "conv_pool"  # 3x3 stride-2 conv, BN, activation, 3x3 stride-2 max pool (ShuffleNetV2)
    GOOGLENET = "googlenet"  # 7x7 stride-2 conv, BN, activation, 3x3 stride-2 ceil-mode max pool
    SQUEEZENET_1_0 = "squeezenet_1_0"  # 7x7 stride-2 unpadded conv with bias, activation, ceil-mode max pool
    SQUEEZENET_1_1 = "squeezenet_1_1"  # the same with a 3x3 conv
    ALEXNET = "alexnet"  # 11x11 stride-4 conv (padding 2) with bias, activation, 3x3 stride-2 max pool
    OVERLAPPING_PATCHIFY = "overlapping_patchify"  # 7x7 stride-4 conv with bias, BN (VAN)
    # Inception-v3's and Inception-ResNet-v2's: 3x3/2 32, 3x3 32, 3x3 64 padded, 3x3/2 max pool, 1x1 80, 3x3 to
    # stem_channels, 3x3/2 max pool; convs unpadded unless said, each with BN and activation (nasscale.spec.inception)
    INCEPTION = "inception"
    NONE = "none"  # no stem: the first stage takes the image (VGG, LeNet); stem_channels must be 0


class HeadType(StrEnum):
    CONV = "conv"  # 1x1 conv to head_channels, BN, activation, global pool, classifier
    NORM = "norm"  # global pool, LayerNorm, classifier (ConvNeXt); head_channels must be 0
    POOL = "pool"  # average pool to head_pool_size x head_pool_size, classifier (ResNet, VGG)
    PREACT = "preact"  # BN, activation, global pool, classifier (pre-activation ResNet, DenseNet)
    CONV_CLASSIFIER = "conv_classifier"  # dropout, 1x1 conv with bias to the classes, activation, pool (SqueezeNet)
    CLASS_TOKEN = "class_token"  # the last stage's class token, LayerNorm, classifier (ViT); head_channels 0


# "Classifier" above: the hidden linear layers of classifier_hidden (each with the activation and dropout),
# dropout when there are none, and the linear layer to the classes.


class Pool(StrEnum):
    """How a pooled stage downsamples (plain stages at their end, fire and inception stages at their start)."""

    MAX2 = "max2"  # 2x2 max pool, stride 2 (VGG)
    MAX3 = "max3"  # 3x3 max pool, stride 2, overlapping (AlexNet)
    MAX2_CEIL = "max2_ceil"  # as max2 in ceil mode (GoogLeNet's last pool)
    MAX3_CEIL = "max3_ceil"  # as max3 in ceil mode (SqueezeNet, GoogLeNet)
    AVG2 = "avg2"  # 2x2 average pool, stride 2 (LeNet-5)


class SqueezeExciteStyle(StrEnum):
    """How the squeeze-excite of mbconv, fused_mbconv, sepconv and bottleneck blocks is made."""

    EFFICIENTNET = "efficientnet"  # squeeze int(se_ratio x block input width), the block's activation, sigmoid
    MOBILENET_V3 = "mobilenet_v3"  # squeeze se_ratio x the gated width made divisible by 8, ReLU, hard sigmoid


@dataclass(frozen=True, slots=True)
class PoolLayout:
    kernel_size: int
    stride: int = 2
    padding: int = 0
    ceil_mode: bool = False
    average: bool = False


POOL_LAYOUTS: dict[Pool, PoolLayout] = {
    Pool.MAX2: PoolLayout(2),
    Pool.MAX3: PoolLayout(3),
    Pool.MAX2_CEIL: PoolLayout(2, ceil_mode=True),
    Pool.MAX3_CEIL: PoolLayout(3, ceil_mode=True),
    Pool.AVG2: PoolLayout(2, average=True),
}
PADDED_MAX_POOL = PoolLayout(3, padding=1)  # ResNet's stem pool
DENSE_TRANSITION_POOL = PoolLayout(2, average=True)


class StemNorm(StrEnum):
    NONE = "none"
    BATCH = "batch"
    LAYER = "layer"


@dataclass(frozen=True, slots=True)
class StemLayout:
    """One stem: a conv, an optional norm and activation, an optional pool."""

    kernel_size: int
    stride: int
    padding: int
    bias: bool
    norm: StemNorm
    activation: bool
    pool: PoolLayout | None = None


PATCHIFY_SIZE = 4
STEM_LAYOUTS: dict[StemType, StemLayout] = {
    StemType.CONV: StemLayout(3, 2, 1, False, StemNorm.BATCH, True),
    StemType.PATCHIFY: StemLayout(PATCHIFY_SIZE, PATCHIFY_SIZE, 0, True, StemNorm.LAYER, False),
    StemType.RESNET: StemLayout(7, 2, 3, False, StemNorm.BATCH, True, PADDED_MAX_POOL),
    StemType.RESNET_PREACT: StemLayout(7, 2, 3, False, StemNorm.NONE, False, PADDED_MAX_POOL),
    StemType.CONV_POOL: StemLayout(3, 2, 1, False, StemNorm.BATCH, True, PADDED_MAX_POOL),
    StemType.GOOGLENET: StemLayout(7, 2, 3, False, StemNorm.BATCH, True, POOL_LAYOUTS[Pool.MAX3_CEIL]),
    StemType.SQUEEZENET_1_0: StemLayout(7, 2, 0, True, StemNorm.NONE, True, POOL_LAYOUTS[Pool.MAX3_CEIL]),
    StemType.SQUEEZENET_1_1: StemLayout(3, 2, 0, True, StemNorm.NONE, True, POOL_LAYOUTS[Pool.MAX3_CEIL]),
    StemType.ALEXNET: StemLayout(11, 4, 2, True, StemNorm.NONE, True, POOL_LAYOUTS[Pool.MAX3]),
    StemType.OVERLAPPING_PATCHIFY: StemLayout(7, 4, 3, True, StemNorm.BATCH, False),
}

_CORE = frozenset({"kernel_size", "activation"})
_BOTTLENECK = _CORE | {"bottleneck_ratio", "groups", "skip"}

# Which optional stage fields mean something for each block type. A field outside this table must
# keep its default, so that one network has exactly one spec (and one arch_id).
APPLICABLE_FIELDS: dict[BlockType, frozenset[str]] = {
    BlockType.MBCONV: frozenset({"kernel_size", "expand_ratio", "se_ratio", "activation", "skip"}),
    BlockType.FUSED_MBCONV: frozenset({"kernel_size", "expand_ratio", "se_ratio", "activation", "skip"}),
    BlockType.SEPCONV: frozenset({"kernel_size", "se_ratio", "activation", "skip"}),
    BlockType.CONV: frozenset({"kernel_size", "activation", "skip"}),
    BlockType.CONVNEXT: frozenset({"kernel_size", "expand_ratio", "activation", "skip"}),
    BlockType.BASIC: _CORE | {"skip"},
    BlockType.BOTTLENECK: _BOTTLENECK | {"se_ratio"},
    BlockType.SE_BOTTLENECK: _BOTTLENECK,
    BlockType.PREACT_BASIC: _CORE | {"skip"},
    BlockType.PREACT_BOTTLENECK: _BOTTLENECK,
    BlockType.DEPTHWISE_SEPARABLE: _CORE,
    BlockType.SHUFFLE: _CORE,
    BlockType.DENSE: _CORE | {"expand_ratio"},  # expand_ratio: DenseNet's bn_size, the 1x1 width / growth
    BlockType.INCEPTION: _CORE | {"pool", "branches"},  # kernel_size: of the second reduced branch
    BlockType.FIRE: _CORE | {"bottleneck_ratio", "pool"},  # bottleneck_ratio: squeeze width / out_channels
    BlockType.PLAIN: _CORE | {"pool", "same_padding"},
    BlockType.VAN: frozenset({"expand_ratio", "activation"}),  # expand_ratio: the MLP ratio
    # expand_ratio: the MLP ratio; see nasscale.spec.geometry for the patch embedding a transformer stage opens with.
    BlockType.TRANSFORMER: frozenset({"expand_ratio", "activation", "num_heads", "patch_size", "class_token",
                                      "position_embedding"}),
    # branches: the width of every conv of the layout, in order (nasscale.spec.inception).
    **dict.fromkeys((BlockType.INCEPTION_V3_A, BlockType.INCEPTION_V3_B, BlockType.INCEPTION_V3_C,
                     BlockType.INCEPTION_V3_D, BlockType.INCEPTION_V3_E, BlockType.INCEPTION_RESNET_MIXED_5B,
                     BlockType.INCEPTION_RESNET_REDUCTION_B), frozenset({"activation", "branches"})),
    **dict.fromkeys((BlockType.INCEPTION_RESNET_A, BlockType.INCEPTION_RESNET_B, BlockType.INCEPTION_RESNET_C),
                    frozenset({"activation", "branches", "residual_scale", "output_activation"})),
}

# The activation a block type gets when a spec file does not name one.
DEFAULT_ACTIVATION: dict[BlockType, Activation] = {
    BlockType.MBCONV: Activation.SILU,
    BlockType.FUSED_MBCONV: Activation.SILU,
    BlockType.SEPCONV: Activation.SILU,
    BlockType.CONV: Activation.SILU,
    BlockType.CONVNEXT: Activation.GELU,
    BlockType.VAN: Activation.GELU,
    BlockType.TRANSFORMER: Activation.GELU,
} | {block: Activation.RELU for block in (
    BlockType.BASIC, BlockType.BOTTLENECK, BlockType.SE_BOTTLENECK, BlockType.PREACT_BASIC,
    BlockType.PREACT_BOTTLENECK, BlockType.DEPTHWISE_SEPARABLE, BlockType.SHUFFLE, BlockType.DENSE,
    BlockType.INCEPTION, BlockType.FIRE, BlockType.PLAIN, BlockType.INCEPTION_V3_A, BlockType.INCEPTION_V3_B,
    BlockType.INCEPTION_V3_C, BlockType.INCEPTION_V3_D, BlockType.INCEPTION_V3_E, BlockType.INCEPTION_RESNET_MIXED_5B,
    BlockType.INCEPTION_RESNET_A, BlockType.INCEPTION_RESNET_B, BlockType.INCEPTION_RESNET_C,
    BlockType.INCEPTION_RESNET_REDUCTION_B)}

# Heads with a 1x1 conv of head_channels; every other head has head_channels 0.
HEADS_WITH_CHANNELS = frozenset({HeadType.CONV})
# Heads that end in linear layers, so that classifier_hidden means something.
HEADS_WITH_LINEAR = frozenset({HeadType.CONV, HeadType.NORM, HeadType.POOL, HeadType.PREACT, HeadType.CLASS_TOKEN})
# Blocks whose squeeze-excite follows Arch.se_style (se_bottleneck's is Hu et al.'s, fixed).
SE_STYLE_BLOCKS = frozenset({BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV, BlockType.BOTTLENECK})

MAX_KERNEL_SIZE = 11
MAX_BOTTLENECK_RATIO = 4.0
CONVNEXT_LAYER_SCALE_INIT = 1e-6
VAN_LAYER_SCALE_INIT = 1e-2
SE_BOTTLENECK_REDUCTION = 16  # Hu et al.'s r
INCEPTION_BRANCHES = 6  # 1x1, 3x3 reduce, 3x3, second reduce, second (kernel_size), pool projection
MAX_PATCH_SIZE = 64  # ViT's are 14, 16 and 32
