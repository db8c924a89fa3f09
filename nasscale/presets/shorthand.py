"""The compact stage constructor and block aliases the modern preset tables are written with."""

from __future__ import annotations

from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType

MB, FUSED, SEP, CONVNEXT = BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV, BlockType.CONVNEXT


def stage(block: BlockType, expand: float, kernel: int, stride: int, channels: int, layers: int,
          se: float = 0.0, activation: Activation = Activation.SILU, skip: bool = True) -> Stage:
    return Stage(block=block, num_blocks=layers, out_channels=channels, stride=stride, kernel_size=kernel,
                 expand_ratio=expand, se_ratio=se, activation=activation, skip=skip)
