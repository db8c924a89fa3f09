"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture"; torchvision's ``inception_v3``) and
Inception-ResNet-v2 (Szegedy et al. 2017; timm's ``inception_resnet_v2``, ported from TF-slim), at 299 px. Module
widths are the references' (the conv order of ``nasscale.spec.inception``'s layouts, which is theirs).

- Inception-v3 here has no auxiliary classifier: torchvision's 27,161,264 parameters include its InceptionAux
  (3,326,696: a 1x1 conv 768 -> 128 and a 5x5 conv 128 -> 768, each with BN, and a 768 -> 1000 linear), which runs
  only in training mode, so its 5.713 GMACs (eval mode) leave it out. The rest is 23,834,568. Head: global average
  pool, dropout 0.5, linear 2048 -> 1000. Norm: BasicConv2d's ``nn.BatchNorm2d(out_channels, eps=0.001)``.
- Inception-ResNet-v2: timm's BasicConv2d is ``nn.BatchNorm2d(out_planes, eps=.001)`` too; its residual scales
  0.17 (Block35 x 10), 0.10 (Block17 x 20), 0.20 (Block8 x 9), and a last Block8 at scale 1 without its ReLU;
  conv2d_7b (1x1 to 1536, BN, ReLU) is the conv head; drop_rate 0.

Light core: no torch.
"""

from __future__ import annotations

from typing import Any

from nasscale.spec.arch import Arch
from nasscale.spec.norm import Norm
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType

INCEPTION_NORM = Norm(batch_norm_eps=1e-3)
INCEPTION_RESOLUTION = 299
INCEPTION_V3_AUX_PARAMS = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)  # 3,326,696


def _stage(block: BlockType, out_channels: int, branches: tuple[int, ...], *, num_blocks: int = 1, stride: int = 1,
           **fields: Any) -> Stage:
    return Stage(block=block, num_blocks=num_blocks, out_channels=out_channels, stride=stride,
                 activation=Activation.RELU, branches=branches, **fields)


def _inception_c(channels_7x7: int, num_blocks: int = 1) -> Stage:
    """torchvision's InceptionC(768, channels_7x7): 1x1 192 | 1x1 c7, 1x7 c7, 7x1 192 | 1x1 c7, 7x1 c7, 1x7 c7,
    7x1 c7, 1x7 192 | pool, 1x1 192."""
    c7 = channels_7x7
    return _stage(BlockType.INCEPTION_V3_C, 768, (192, c7, c7, 192, c7, c7, c7, c7, 192, 192), num_blocks=num_blocks)


def inception_v3() -> Arch:
    stages = (
        _stage(BlockType.INCEPTION_V3_A, 256, (64, 48, 64, 64, 96, 96, 32)),  # Mixed_5b, pool_features 32
        _stage(BlockType.INCEPTION_V3_A, 288, (64, 48, 64, 64, 96, 96, 64), num_blocks=2),  # Mixed_5c, 5d
        _stage(BlockType.INCEPTION_V3_B, 768, (384, 64, 96, 96), stride=2),  # Mixed_6a: 384 + 96 + 288
        _inception_c(128),  # Mixed_6b
        _inception_c(160, num_blocks=2),  # Mixed_6c, 6d
        _inception_c(192),  # Mixed_6e
        _stage(BlockType.INCEPTION_V3_D, 1280, (192, 320, 192, 192, 192, 192), stride=2),  # Mixed_7a: 320 + 192 + 768
        _stage(BlockType.INCEPTION_V3_E, 2048, (320, 384, 384, 384, 448, 384, 384, 384, 192), num_blocks=2),  # 7b, 7c
    )
    return Arch(stages=stages, stem=StemType.INCEPTION, stem_channels=192, head=HeadType.POOL, head_channels=0,
                resolution=INCEPTION_RESOLUTION, activation=Activation.RELU, dropout=0.5, norm=INCEPTION_NORM)


def inception_resnet_v2() -> Arch:
    stages = (
        _stage(BlockType.INCEPTION_RESNET_MIXED_5B, 320, (96, 48, 64, 64, 96, 96, 64)),
        _stage(BlockType.INCEPTION_RESNET_A, 320, (32, 32, 32, 32, 48, 64), num_blocks=10, residual_scale=0.17),
        _stage(BlockType.INCEPTION_V3_B, 1088, (384, 256, 256, 384), stride=2),  # Mixed_6a: 384 + 384 + 320
        _stage(BlockType.INCEPTION_RESNET_B, 1088, (192, 128, 160, 192), num_blocks=20, residual_scale=0.10),
        _stage(BlockType.INCEPTION_RESNET_REDUCTION_B, 2080, (256, 384, 256, 288, 256, 288, 320), stride=2),  # Mixed_7a
        _stage(BlockType.INCEPTION_RESNET_C, 2080, (192, 192, 224, 256), num_blocks=9, residual_scale=0.20),
        _stage(BlockType.INCEPTION_RESNET_C, 2080, (192, 192, 224, 256), output_activation=False),  # block8
    )
    return Arch(stages=stages, stem=StemType.INCEPTION, stem_channels=192, head=HeadType.CONV, head_channels=1536,
                resolution=INCEPTION_RESOLUTION, activation=Activation.RELU, dropout=0.0, norm=INCEPTION_NORM)
