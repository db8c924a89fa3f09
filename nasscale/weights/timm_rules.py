"""The name mapping of each family to timm 1.0's model of it (``timm/models/<family>.py``): one function per
family, from an ``Arch`` to the ``Rule``s pairing our modules with timm's, as ``torchvision_rules`` does for
torchvision. timm's ResNets keep torchvision's names, so ``resnet`` is shared.
"""

from __future__ import annotations

from nasscale.spec.arch import Arch, BlockPlacement
from nasscale.spec.geometry import needs_projection
from nasscale.spec.inception import RESIDUAL_MIXED_BLOCKS
from nasscale.spec.vocabulary import BlockType
from nasscale.weights.rules import (
    Rule,
    TensorLayout,
    conv_norm,
    has_expand,
    has_squeeze_excite,
    inception_stem_convs,
    mixed_convs,
    our_stages,
    squeeze_excite,
)
from nasscale.weights.torchvision_rules import resnet

__all__ = ["convnext", "efficientnet", "inception_resnet_v2", "resnet", "resnetv2", "vision_transformer"]


def _timm_block(ours: str, block: BlockPlacement, theirs: str) -> list[Rule]:
    """timm's builder blocks (models/_efficientnet_blocks.py): InvertedResidual (conv_pw/bn1, conv_dw/bn2, se,
    conv_pwl/bn3) for an mbconv with its expansion; DepthwiseSeparableConv (conv_dw/bn1, se, conv_pw/bn2) for a
    sepconv, an mbconv at expansion 1 (which has none) and MobileNetV1's depthwise_separable layer."""
    body = f"{ours}.body"
    kind = block.stage.block
    if kind is BlockType.DEPTHWISE_SEPARABLE:  # no body: a Sequential of two ConvNormActs, no residual
        return conv_norm(f"{ours}.0", f"{theirs}.conv_dw", f"{theirs}.bn1") + \
            conv_norm(f"{ours}.1", f"{theirs}.conv_pw", f"{theirs}.bn2")
    se = squeeze_excite(f"{body}.squeeze_excite", f"{theirs}.se", "conv_reduce", "conv_expand") \
        if has_squeeze_excite(block) else []
    if kind is BlockType.MBCONV and has_expand(block):
        return conv_norm(f"{body}.expand", f"{theirs}.conv_pw", f"{theirs}.bn1") + \
            conv_norm(f"{body}.depthwise", f"{theirs}.conv_dw", f"{theirs}.bn2") + se + \
            conv_norm(f"{body}.project", f"{theirs}.conv_pwl", f"{theirs}.bn3")
    return conv_norm(f"{body}.depthwise", f"{theirs}.conv_dw", f"{theirs}.bn1") + se + \
        conv_norm(f"{body}.project", f"{theirs}.conv_pw", f"{theirs}.bn2")


def efficientnet(arch: Arch) -> list[Rule]:
    """timm's EfficientNet class (models/efficientnet.py), which builds efficientnet_b*, semnasnet_100 (MnasNet-A1),
    mobilenetv2_100 and mobilenetv1_100: ``conv_stem``/``bn1``, ``blocks.{i}.{j}``, ``conv_head``/``bn2`` (absent
    in MobileNetV1, whose head is the pool), ``classifier``."""
    rules = conv_norm("stem", "conv_stem", "bn1")
    for stage in our_stages(arch):
        for number, (ours, block) in enumerate(stage.blocks):
            rules += _timm_block(ours, block, f"blocks.{stage.placement.index}.{number}")
    if arch.head_channels:
        rules += conv_norm("head.conv", "conv_head", "bn2")
    return rules + [Rule("head.classifier", "classifier")]


def resnetv2(arch: Arch) -> list[Rule]:
    """timm's pre-activation ResNetV2 (models/resnetv2.py): ``stem.conv``, ``stages.{i}.blocks.{j}`` with
    ``norm1``, ``conv1``, ``norm2``, ``conv2``, ``norm3``, ``conv3`` and ``downsample.conv``; the final ``norm`` and
    ``head.fc``."""
    rules = [Rule("stem.0", "stem.conv")]
    for stage in our_stages(arch):
        for number, (ours, block) in enumerate(stage.blocks):
            theirs = f"stages.{stage.placement.index}.blocks.{number}"
            if needs_projection(block.in_channels, block.out_channels, block.stride):  # timm registers it first
                rules.append(Rule(f"{ours}.projection", f"{theirs}.downsample.conv"))
            rules += [Rule(f"{ours}.preact.0", f"{theirs}.norm1"), Rule(f"{ours}.convs.0", f"{theirs}.conv1"),
                      Rule(f"{ours}.convs.1.0", f"{theirs}.norm2"), Rule(f"{ours}.convs.2", f"{theirs}.conv2"),
                      Rule(f"{ours}.convs.3.0", f"{theirs}.norm3"), Rule(f"{ours}.convs.4", f"{theirs}.conv3")]
    return rules + [Rule("head.conv.0", "norm"), Rule("head.classifier", "head.fc", layout=TensorLayout.POINTWISE)]


def convnext(arch: Arch) -> list[Rule]:
    """timm's ConvNeXt (models/convnext.py): ``stem.0``/``stem.1``, ``stages.{i}.downsample.0``/``.1`` (stage 0 has
    none), ``stages.{i}.blocks.{j}`` with ``conv_dw``, ``norm``, ``mlp.fc1``, ``mlp.fc2`` and ``gamma`` (our
    layer_scale, flattened); ``head.norm`` and ``head.fc``."""
    rules = [Rule("stem.0", "stem.0"), Rule("stem.1", "stem.1")]
    for stage in our_stages(arch):
        prefix = f"stages.{stage.placement.index}"
        if stage.transition is not None:
            rules += [Rule(f"{stage.transition}.0", f"{prefix}.downsample.0"),
                      Rule(f"{stage.transition}.1", f"{prefix}.downsample.1")]
        for number, (ours, _) in enumerate(stage.blocks):
            theirs = f"{prefix}.blocks.{number}"
            rules += [Rule(ours, theirs, renames=(("layer_scale", "gamma"),), layout=TensorLayout.FLAT),
                      Rule(f"{ours}.depthwise", f"{theirs}.conv_dw"), Rule(f"{ours}.norm", f"{theirs}.norm"),
                      Rule(f"{ours}.expand", f"{theirs}.mlp.fc1"), Rule(f"{ours}.project", f"{theirs}.mlp.fc2")]
    return rules + [Rule("head.norm", "head.norm"), Rule("head.classifier", "head.fc")]


INCEPTION_RESNET_V2_STEM = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a")
# timm's module of each of our stages, in order, and whether it is a Sequential of the stage's blocks (``repeat``)
# or the one block itself.
INCEPTION_RESNET_V2_STAGES = (("mixed_5b", False), ("repeat", True), ("mixed_6a", False), ("repeat_1", True),
                              ("mixed_7a", False), ("repeat_2", True), ("block8", False))


def inception_resnet_v2(arch: Arch) -> list[Rule]:
    """timm's InceptionResnetV2 (models/inception_resnet_v2.py): the stem's ConvNormAct ``conv2d_1a`` to
    ``conv2d_4a`` (``.conv``, ``.bn``), then ``mixed_5b``, ``repeat.{j}`` (Block35), ``mixed_6a``, ``repeat_1.{j}``
    (Block17), ``mixed_7a``, ``repeat_2.{j}`` (Block8) and ``block8``: each module's ``branch{b}`` is the
    ConvNormAct itself where the branch is one conv, else a Sequential numbering its pool (if any) and convs;
    a residual module's 1x1 conv is ``conv2d``. ``conv2d_7b`` is the head conv, ``classif`` the classifier."""
    rules = [rule for (conv, norm), theirs in zip(inception_stem_convs(), INCEPTION_RESNET_V2_STEM, strict=True)
             for rule in (Rule(conv, f"{theirs}.conv"), Rule(norm, f"{theirs}.bn"))]
    # zip stops at the shorter: stages or blocks no rule names are left for tensor_pairs to report.
    for stage, (module, repeated) in zip(our_stages(arch), INCEPTION_RESNET_V2_STAGES, strict=False):
        blocks = stage.blocks if repeated else stage.blocks[:1]
        for number, (ours, block) in enumerate(blocks):
            theirs = f"{module}.{number}" if repeated else module
            for conv in mixed_convs(ours, block):
                name = f"{theirs}.branch{conv.branch}" + ("" if conv.alone else f".{conv.layer}")
                name += "" if conv.part is None else f".{conv.part}"
                rules += conv_norm(conv.path, f"{name}.conv", f"{name}.bn")
            if block.stage.block in RESIDUAL_MIXED_BLOCKS:
                rules.append(Rule(f"{ours}.projection", f"{theirs}.conv2d"))
    return rules + conv_norm("head.conv", "conv2d_7b.conv", "conv2d_7b.bn") + [Rule("head.classifier", "classif")]


def vision_transformer(arch: Arch) -> list[Rule]:
    """timm's VisionTransformer (models/vision_transformer.py) as vit_base_patch16_224, vit_base_patch32_224 and
    vit_large_patch16_224 build it: the top module's ``cls_token`` and ``pos_embed`` and ``patch_embed.proj`` (our
    patch embedding), ``blocks.{i}`` (``norm1``, ``attn.qkv``: q, k, v packed as ours, ``attn.proj``, ``norm2``,
    ``mlp.fc1``, ``mlp.fc2``), ``norm`` (the final norm, our head's) and ``head``."""
    rules = []
    number = 0
    for stage in our_stages(arch):
        if stage.transition is not None:
            embedding = stage.transition
            rules += [Rule(f"{embedding}.class_token", "cls_token"),
                      Rule(f"{embedding}.position_embedding", "pos_embed"),
                      Rule(f"{embedding}.projection", "patch_embed.proj")]
        for ours, _ in stage.blocks:
            theirs = f"blocks.{number}"
            number += 1
            rules += [Rule(f"{ours}.attention_norm", f"{theirs}.norm1"),
                      Rule(f"{ours}.attention.qkv", f"{theirs}.attn.qkv"),
                      Rule(f"{ours}.attention.projection", f"{theirs}.attn.proj"),
                      Rule(f"{ours}.mlp_norm", f"{theirs}.norm2"), Rule(f"{ours}.mlp.0", f"{theirs}.mlp.fc1"),
                      Rule(f"{ours}.mlp.2", f"{theirs}.mlp.fc2")]
    return rules + [Rule("head.norm", "norm"), Rule("head.classifier", "head")]
