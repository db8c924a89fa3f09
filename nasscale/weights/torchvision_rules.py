"""The name mapping of each family to torchvision 0.29's model of it: one function per family, from an ``Arch`` of
that family to the ``Rule``s that pair each of our modules with torchvision's (``torchvision/models/<family>.py``).

Each function walks our stages and blocks and says where torchvision keeps the same layer: ``features.{i}.{j}
.block.{k}`` in an EfficientNet, ``layer{i}.{j}.conv1`` in a ResNet. Nothing is matched by position in a state dict.
"""

from __future__ import annotations

from nasscale.presets.classic import GOOGLENET_MODULES
from nasscale.spec.arch import Arch, BlockPlacement
from nasscale.spec.geometry import needs_projection, shuffle_splits
from nasscale.spec.vocabulary import BlockType
from nasscale.weights.rules import (
    Rule,
    conv_norm,
    has_expand,
    has_squeeze_excite,
    inception_stem_convs,
    mixed_convs,
    our_stages,
    squeeze_excite,
)

# ---------------------------------------------------------------------------- EfficientNet, MobileNetV3, V2


def _inverted_residual(ours: str, block: BlockPlacement, theirs: str) -> list[Rule]:
    """torchvision's MBConv and MobileNetV3's InvertedResidual: ``block`` is a Sequential of the expansion (if
    any), the depthwise conv, the SE (if any) and the projection, numbered in that order."""
    body = f"{ours}.body"
    parts = (["expand"] if has_expand(block) else []) + ["depthwise"]
    parts += (["squeeze_excite"] if has_squeeze_excite(block) else []) + ["project"]
    rules = []
    for index, part in enumerate(parts):
        layer = f"{theirs}.block.{index}"
        if part == "squeeze_excite":
            rules += squeeze_excite(f"{body}.{part}", layer)
        else:
            rules += conv_norm(f"{body}.{part}", f"{layer}.0", f"{layer}.1")
    return rules


def _fused(ours: str, block: BlockPlacement, theirs: str) -> list[Rule]:
    """torchvision's FusedMBConv: the kxk expansion and the 1x1 projection, or one kxk conv at expansion 1 (it has
    no squeeze-excite; EfficientNetV2's fused stages have none either)."""
    parts = ["expand", "project"] if has_expand(block) else ["conv"]
    return [rule for index, part in enumerate(parts)
            for rule in conv_norm(f"{ours}.body.{part}", f"{theirs}.block.{index}.0", f"{theirs}.block.{index}.1")]


def efficientnet(arch: Arch) -> list[Rule]:
    """EfficientNet B0-B7 and V2 S/M/L (torchvision models/efficientnet.py): ``features.0`` the stem,
    ``features.{i+1}`` our stage i, then the head conv; ``classifier.1`` the linear layer."""
    rules = conv_norm("stem", "features.0.0", "features.0.1")
    stages = our_stages(arch)
    for stage in stages:
        for number, (ours, block) in enumerate(stage.blocks):
            theirs = f"features.{stage.placement.index + 1}.{number}"
            fused = block.stage.block is BlockType.FUSED_MBCONV
            rules += _fused(ours, block, theirs) if fused else _inverted_residual(ours, block, theirs)
    head = f"features.{len(stages) + 1}"
    return rules + conv_norm("head.conv", f"{head}.0", f"{head}.1") + [Rule("head.classifier", "classifier.1")]


def mobilenet_v3(arch: Arch) -> list[Rule]:
    """MobileNetV3 Large/Small (models/mobilenetv3.py): one flat ``features`` list, the stem, every block, the
    head conv; ``classifier.0`` the hidden linear layer, ``classifier.3`` the last."""
    rules = conv_norm("stem", "features.0.0", "features.0.1")
    blocks = [block for stage in our_stages(arch) for block in stage.blocks]
    for number, (ours, block) in enumerate(blocks, start=1):
        rules += _inverted_residual(ours, block, f"features.{number}")
    head = f"features.{len(blocks) + 1}"
    return rules + conv_norm("head.conv", f"{head}.0", f"{head}.1") + [
        Rule("head.hidden.0", "classifier.0"), Rule("head.classifier", "classifier.3")]


def mobilenet_v2(arch: Arch) -> list[Rule]:
    """MobileNetV2 (models/mobilenetv2.py): a flat ``features`` list; a block's ``conv`` holds the expansion and
    the depthwise as Conv2dNormActivation, then the projection's conv and BatchNorm as two separate layers."""
    rules = conv_norm("stem", "features.0.0", "features.0.1")
    blocks = [block for stage in our_stages(arch) for block in stage.blocks]
    for number, (ours, block) in enumerate(blocks, start=1):
        layers = f"features.{number}.conv"
        index = 0
        if has_expand(block):
            rules += conv_norm(f"{ours}.body.expand", f"{layers}.0.0", f"{layers}.0.1")
            index = 1
        rules += conv_norm(f"{ours}.body.depthwise", f"{layers}.{index}.0", f"{layers}.{index}.1")
        rules += conv_norm(f"{ours}.body.project", f"{layers}.{index + 1}", f"{layers}.{index + 2}")
    head = f"features.{len(blocks) + 1}"
    return rules + conv_norm("head.conv", f"{head}.0", f"{head}.1") + [Rule("head.classifier", "classifier.1")]


def mnasnet(arch: Arch) -> list[Rule]:
    """MnasNet-B1 (models/mnasnet.py, mnasnet1_0): a flat ``layers`` list of convs and norms: the stem (0, 1), the
    first separable block's depthwise (3, 4) and projection (6, 7), one ``_stack`` per later stage (8 to 13),
    whose blocks number their layers 0/1 (expand), 3/4 (depthwise), 6/7 (project); the head conv (14, 15)."""
    rules = conv_norm("stem", "layers.0", "layers.1")
    first, *rest = our_stages(arch)
    (ours, _), = first.blocks
    rules += conv_norm(f"{ours}.body.depthwise", "layers.3", "layers.4")
    rules += conv_norm(f"{ours}.body.project", "layers.6", "layers.7")
    for number, stage in enumerate(rest, start=8):
        for index, (ours, _) in enumerate(stage.blocks):
            layers = f"layers.{number}.{index}.layers"
            rules += conv_norm(f"{ours}.body.expand", f"{layers}.0", f"{layers}.1")
            rules += conv_norm(f"{ours}.body.depthwise", f"{layers}.3", f"{layers}.4")
            rules += conv_norm(f"{ours}.body.project", f"{layers}.6", f"{layers}.7")
    head = 8 + len(rest)
    return rules + conv_norm("head.conv", f"layers.{head}", f"layers.{head + 1}") + [
        Rule("head.classifier", "classifier.1")]


# ------------------------------------------------------------------------------------------- ResNet, RegNet


# Our bottleneck's parts, and a basic block's two ConvNormActs, under torchvision's names.
RESNET_PARTS = {
    BlockType.BASIC: (("0", "1"), ("1", "2")),
    BlockType.BOTTLENECK: (("reduce", "1"), ("grouped", "2"), ("expand", "3")),
    BlockType.SE_BOTTLENECK: (("reduce", "1"), ("grouped", "2"), ("expand", "3")),
}


def resnet_block(ours: str, block: BlockPlacement, theirs: str) -> list[Rule]:
    """torchvision's BasicBlock and Bottleneck (conv1/bn1 ...; the projection ``downsample.0``/``.1``); timm's
    ResNet keeps the same names, and its SE-ResNet adds ``se.fc1``/``se.fc2``."""
    rules = []
    for part, number in RESNET_PARTS[block.stage.block]:
        rules += conv_norm(f"{ours}.body.{part}", f"{theirs}.conv{number}", f"{theirs}.bn{number}")
    if block.stage.block is BlockType.SE_BOTTLENECK:
        rules += squeeze_excite(f"{ours}.body.output_squeeze_excite", f"{theirs}.se")
    return rules + _projection(ours, block, f"{theirs}.downsample.0", f"{theirs}.downsample.1")


def _projection(ours: str, block: BlockPlacement, theirs_conv: str, theirs_norm: str) -> list[Rule]:
    if not needs_projection(block.in_channels, block.out_channels, block.stride):
        return []
    return conv_norm(f"{ours}.shortcut", theirs_conv, theirs_norm)


def resnet(arch: Arch) -> list[Rule]:
    """ResNet-18 to 152 and ResNeXt (models/resnet.py): ``conv1``/``bn1``, ``layer{i+1}.{j}``, ``fc``."""
    rules = conv_norm("stem", "conv1", "bn1")
    for stage in our_stages(arch):
        for number, (ours, block) in enumerate(stage.blocks):
            rules += resnet_block(ours, block, f"layer{stage.placement.index + 1}.{number}")
    return rules + [Rule("head.classifier", "fc")]


def regnet(arch: Arch) -> list[Rule]:
    """RegNet X and Y (models/regnet.py): ``stem``, ``trunk_output.block{i}.block{i}-{j}`` with the bottleneck as
    ``f.a``, ``f.b``, ``f.se``, ``f.c`` and the projection ``proj`` (registered first, so its tensors come first in
    their state dict: the names, not the order, pair them), ``fc``."""
    rules = conv_norm("stem", "stem.0", "stem.1")
    for stage in our_stages(arch):
        number = stage.placement.index + 1
        for index, (ours, block) in enumerate(stage.blocks):
            theirs = f"trunk_output.block{number}.block{number}-{index}"
            rules += _projection(ours, block, f"{theirs}.proj.0", f"{theirs}.proj.1")
            rules += conv_norm(f"{ours}.body.reduce", f"{theirs}.f.a.0", f"{theirs}.f.a.1")
            rules += conv_norm(f"{ours}.body.grouped", f"{theirs}.f.b.0", f"{theirs}.f.b.1")
            if has_squeeze_excite(block):
                rules += squeeze_excite(f"{ours}.body.squeeze_excite", f"{theirs}.f.se")
            rules += conv_norm(f"{ours}.body.expand", f"{theirs}.f.c.0", f"{theirs}.f.c.1")
    return rules + [Rule("head.classifier", "fc")]


# ----------------------------------------------------------------------------------------------- ConvNeXt


def convnext(arch: Arch) -> list[Rule]:
    """ConvNeXt T/S/B/L (models/convnext.py): ``features.0`` the stem, ``features.{2i}`` the downsampling before
    stage i, ``features.{2i+1}.{j}`` its blocks (``block.0`` depthwise, ``block.2`` LayerNorm, ``block.3`` and
    ``block.5`` the MLP, ``layer_scale``); ``classifier.0`` the LayerNorm, ``classifier.2`` the linear layer."""
    rules = [Rule("stem.0", "features.0.0"), Rule("stem.1", "features.0.1")]
    for stage in our_stages(arch):
        index = stage.placement.index
        if stage.transition is not None:
            rules += [Rule(f"{stage.transition}.0", f"features.{2 * index}.0"),
                      Rule(f"{stage.transition}.1", f"features.{2 * index}.1")]
        for number, (ours, _) in enumerate(stage.blocks):
            theirs = f"features.{2 * index + 1}.{number}"
            rules += [Rule(ours, theirs), Rule(f"{ours}.depthwise", f"{theirs}.block.0"),
                      Rule(f"{ours}.norm", f"{theirs}.block.2"), Rule(f"{ours}.expand", f"{theirs}.block.3"),
                      Rule(f"{ours}.project", f"{theirs}.block.5")]
    return rules + [Rule("head.norm", "classifier.0"), Rule("head.classifier", "classifier.2")]


# --------------------------------------------------------------------------- DenseNet, ShuffleNet, GoogLeNet


def densenet(arch: Arch) -> list[Rule]:
    """DenseNet-121 (models/densenet.py): ``features.conv0``/``norm0``, ``features.denseblock{i}.denselayer{j}``
    (norm1, conv1, norm2, conv2), ``features.transition{i}`` (norm, conv), ``features.norm5``, ``classifier``."""
    rules = [Rule("stem.0", "features.conv0"), Rule("stem.1", "features.norm0")]
    for stage in our_stages(arch):
        number = stage.placement.index + 1
        if stage.transition is not None:
            theirs = f"features.transition{number - 1}"
            rules += [Rule(f"{stage.transition}.0.0", f"{theirs}.norm"),
                      Rule(f"{stage.transition}.1", f"{theirs}.conv")]
        for index, (ours, _) in enumerate(stage.blocks, start=1):
            theirs = f"features.denseblock{number}.denselayer{index}"
            rules += [Rule(f"{ours}.body.0.0", f"{theirs}.norm1"), Rule(f"{ours}.body.1", f"{theirs}.conv1"),
                      Rule(f"{ours}.body.2.0", f"{theirs}.norm2"), Rule(f"{ours}.body.3", f"{theirs}.conv2")]
    return rules + [Rule("head.conv.0", "features.norm5"), Rule("head.classifier", "classifier")]


def shufflenet(arch: Arch) -> list[Rule]:
    """ShuffleNetV2 (models/shufflenetv2.py): ``conv1``, ``stage{i+2}.{j}`` with ``branch1`` (the downsampling
    unit's depthwise branch: 0/1, 2/3) and ``branch2`` (0/1, 3/4, 5/6; ReLUs between), ``conv5``, ``fc``."""
    rules = conv_norm("stem", "conv1.0", "conv1.1")
    for stage in our_stages(arch):
        for index, (ours, block) in enumerate(stage.blocks):
            theirs = f"stage{stage.placement.index + 2}.{index}"
            if not shuffle_splits(block.in_channels, block.out_channels, block.stride):  # the two-branch unit
                rules += conv_norm(f"{ours}.shortcut_branch.0", f"{theirs}.branch1.0", f"{theirs}.branch1.1")
                rules += conv_norm(f"{ours}.shortcut_branch.1", f"{theirs}.branch1.2", f"{theirs}.branch1.3")
            for part, (conv, norm) in enumerate(((0, 1), (3, 4), (5, 6))):
                rules += conv_norm(f"{ours}.main_branch.{part}", f"{theirs}.branch2.{conv}", f"{theirs}.branch2.{norm}")
    return rules + conv_norm("head.conv", "conv5.0", "conv5.1") + [Rule("head.classifier", "fc")]


def googlenet(arch: Arch) -> list[Rule]:
    """GoogLeNet (models/googlenet.py): BasicConv2d layers ``conv1``-``conv3`` (``.conv``, ``.bn``), then
    ``inception3a`` ... ``inception5b`` with ``branch1`` to ``branch4``; ``fc``. The auxiliary classifiers of a
    training checkpoint (``aux1``, ``aux2``) have no counterpart and are skipped (see the reference table)."""

    def basic(ours: str, theirs: str) -> list[Rule]:
        return conv_norm(ours, f"{theirs}.conv", f"{theirs}.bn")

    rules = basic("stem", "conv1")
    stages = our_stages(arch)
    convs = [stage for stage in stages if stage.placement.stage.block is BlockType.CONV]
    modules = [stage for stage in stages if stage.placement.stage.block is BlockType.INCEPTION]
    # zip stops at the shorter: a network of another layout is left with modules no rule names, which
    # tensor_pairs reports.
    for stage, theirs in zip(convs, ("conv2", "conv3"), strict=False):
        rules += basic(f"{stage.blocks[0][0]}.body", theirs)
    for stage, (name, *_) in zip(modules, GOOGLENET_MODULES, strict=False):
        ours, theirs = stage.blocks[0][0], f"inception{name}"
        rules += basic(f"{ours}.one", f"{theirs}.branch1")
        rules += basic(f"{ours}.three.0", f"{theirs}.branch2.0") + basic(f"{ours}.three.1", f"{theirs}.branch2.1")
        rules += basic(f"{ours}.second.0", f"{theirs}.branch3.0") + basic(f"{ours}.second.1", f"{theirs}.branch3.1")
        rules += basic(f"{ours}.pool.1", f"{theirs}.branch4.1")
    return rules + [Rule("head.classifier", "fc")]


# ------------------------------------------------------------------------------------------------ Inception-v3

INCEPTION_V3_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
INCEPTION_V3_MODULES = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                        "Mixed_7a", "Mixed_7b", "Mixed_7c")
# torchvision's BasicConv2d of each module (InceptionA to InceptionE), in the order of our layouts' convs (branch by
# branch, layer by layer: the order torchvision declares them in). InceptionE splits a 3x3 into 1x3 (``_2a``,
# ``_3a``) and 3x1 (``_2b``, ``_3b``) on the same input.
INCEPTION_V3_CONVS: dict[BlockType, tuple[str, ...]] = {
    BlockType.INCEPTION_V3_A: ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
                               "branch3x3dbl_3", "branch_pool"),
    BlockType.INCEPTION_V3_B: ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    BlockType.INCEPTION_V3_C: ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
                               "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"),
    BlockType.INCEPTION_V3_D: ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
                               "branch7x7x3_4"),
    BlockType.INCEPTION_V3_E: ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
                               "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}


def inception_v3(arch: Arch) -> list[Rule]:
    """Inception-v3 (models/inception.py): the stem's BasicConv2d ``Conv2d_1a_3x3`` to ``Conv2d_4a_3x3`` (``.conv``,
    ``.bn``), the modules ``Mixed_5b`` to ``Mixed_7c`` (their BasicConv2d named as INCEPTION_V3_CONVS lists), ``fc``.
    The auxiliary classifier ``AuxLogits`` has no counterpart (its tensors are skipped: see the reference table)."""
    rules = [rule for (conv, norm), theirs in zip(inception_stem_convs(), INCEPTION_V3_STEM, strict=True)
             for rule in (Rule(conv, f"{theirs}.conv"), Rule(norm, f"{theirs}.bn"))]
    blocks = [block for stage in our_stages(arch) for block in stage.blocks]
    # zip stops at the shorter, as googlenet's: modules no rule names are left for tensor_pairs to report.
    for (ours, block), module in zip(blocks, INCEPTION_V3_MODULES, strict=False):
        names = INCEPTION_V3_CONVS.get(block.stage.block, ())
        for conv, name in zip(mixed_convs(ours, block), names, strict=False):
            rules += conv_norm(conv.path, f"{module}.{name}.conv", f"{module}.{name}.bn")
    return rules + [Rule("head.classifier", "fc")]


# -------------------------------------------------------------------------------------------- Vision Transformer


def vision_transformer(arch: Arch) -> list[Rule]:
    """ViT-B/16, B/32, L/16 (models/vision_transformer.py): the top module's ``class_token`` and ``conv_proj`` (our
    patch embedding, with ``encoder.pos_embedding``), ``encoder.layers.encoder_layer_{i}`` (``ln_1``,
    ``self_attention``: nn.MultiheadAttention, whose packed ``in_proj_weight``/``in_proj_bias`` are our qkv layer's
    rows q, k, v as they are, and ``out_proj``; ``ln_2``, ``mlp.0`` and ``mlp.3``), ``encoder.ln`` (the final norm,
    our head's) and ``heads.head``."""
    rules = []
    number = 0  # torchvision numbers the encoder's layers from 0 through the whole network
    for stage in our_stages(arch):
        if stage.transition is not None:
            embedding = stage.transition
            rules += [Rule(f"{embedding}.class_token", "class_token"), Rule(f"{embedding}.projection", "conv_proj"),
                      Rule(f"{embedding}.position_embedding", "encoder.pos_embedding")]
        for ours, _ in stage.blocks:
            theirs = f"encoder.layers.encoder_layer_{number}"
            number += 1
            rules += [Rule(f"{ours}.attention_norm", f"{theirs}.ln_1"),
                      Rule(f"{ours}.attention.qkv", f"{theirs}.self_attention",
                           renames=(("weight", "in_proj_weight"), ("bias", "in_proj_bias"))),
                      Rule(f"{ours}.attention.projection", f"{theirs}.self_attention.out_proj"),
                      Rule(f"{ours}.mlp_norm", f"{theirs}.ln_2"), Rule(f"{ours}.mlp.0", f"{theirs}.mlp.0"),
                      Rule(f"{ours}.mlp.2", f"{theirs}.mlp.3")]
    return rules + [Rule("head.norm", "encoder.ln"), Rule("head.classifier", "heads.head")]


# ------------------------------------------------------------------------------------ SqueezeNet, VGG, AlexNet


def squeezenet(arch: Arch) -> list[Rule]:
    """SqueezeNet 1.0 and 1.1 (models/squeezenet.py): ``features`` numbers every layer (conv, ReLU, pool, Fire);
    a Fire has ``squeeze``, ``expand1x1``, ``expand3x3``; ``classifier.1`` the final 1x1 conv."""
    rules = [Rule("stem.0", "features.0")]
    number = 3  # after the stem's conv, ReLU and max pool
    for stage in our_stages(arch):
        number += stage.transition is not None  # a downsampling stage's max pool
        for ours, _ in stage.blocks:
            rules += [Rule(f"{ours}.squeeze.0", f"features.{number}.squeeze"),
                      Rule(f"{ours}.expand_one.0", f"features.{number}.expand1x1"),
                      Rule(f"{ours}.expand_wide.0", f"features.{number}.expand3x3")]
            number += 1
    return rules + [Rule("head.conv.1", "classifier.1")]


def _plain_features(arch: Arch, number: int) -> list[Rule]:
    """VGG's and AlexNet's ``features``: each conv is followed by its ReLU, each closing pool is one layer."""
    rules = []
    for stage in our_stages(arch):
        for ours, _ in stage.blocks:
            rules.append(Rule(f"{ours}.0", f"features.{number}"))
            number += 2
        number += stage.closing is not None
    return rules


def vgg(arch: Arch) -> list[Rule]:
    """VGG without BN (models/vgg.py): ``features`` from 0; ``classifier.0``, ``.3``, ``.6`` the linear layers."""
    return _plain_features(arch, 0) + [Rule("head.hidden.0", "classifier.0"), Rule("head.hidden.3", "classifier.3"),
                                       Rule("head.classifier", "classifier.6")]


def alexnet(arch: Arch) -> list[Rule]:
    """AlexNet (models/alexnet.py): the stem's conv is ``features.0`` (then ReLU and pool); ``classifier.1``,
    ``.4``, ``.6`` the linear layers (torchvision drops out before each hidden layer, we after: same in eval)."""
    return [Rule("stem.0", "features.0"), *_plain_features(arch, 3), Rule("head.hidden.0", "classifier.1"),
            Rule("head.hidden.3", "classifier.4"), Rule("head.classifier", "classifier.6")]
