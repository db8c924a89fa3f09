"""The Vision Transformer (Dosovitskiy et al. 2021) as torchvision builds it (``torchvision/models/
vision_transformer.py``): no stem; one transformer stage whose patch embedding is a patch x patch conv with bias
from the image, with a class token and a learned position embedding; pre-norm encoder layers (MLP ratio 4, GELU);
the final LayerNorm and the linear classifier on the class token (the class_token head). No dropout
(``dropout=0.0``, ``attention_dropout=0.0``). Norm: ``partial(nn.LayerNorm, eps=1e-6)`` everywhere (the defaults of
``EncoderBlock``, ``Encoder`` and ``VisionTransformer``), the default ``Norm``; ViT has no BatchNorm.

Light core: no torch.
"""

from __future__ import annotations

from nasscale.spec.arch import Arch
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType

VIT_MLP_RATIO = 4  # mlp_dim / hidden_dim of every torchvision ViT (3072 / 768, 4096 / 1024, 5120 / 1280)


def vision_transformer(*, patch_size: int, depth: int, width: int, num_heads: int, resolution: int = 224,
                       mlp_ratio: float = VIT_MLP_RATIO) -> Arch:
    """ViT-<width>/<patch_size>: torchvision's ``_vision_transformer(patch_size, num_layers, num_heads, hidden_dim,
    mlp_dim)``."""
    stage = Stage(block=BlockType.TRANSFORMER, num_blocks=depth, out_channels=width, stride=1,
                  expand_ratio=mlp_ratio, activation=Activation.GELU, num_heads=num_heads, patch_size=patch_size,
                  class_token=True, position_embedding=True)
    return Arch(stages=(stage,), stem=StemType.NONE, stem_channels=0, head=HeadType.CLASS_TOKEN, head_channels=0,
                resolution=resolution, activation=Activation.GELU, dropout=0.0)


def vit_b_16() -> Arch:
    return vision_transformer(patch_size=16, depth=12, width=768, num_heads=12)


def vit_b_32() -> Arch:
    return vision_transformer(patch_size=32, depth=12, width=768, num_heads=12)


def vit_l_16() -> Arch:
    return vision_transformer(patch_size=16, depth=24, width=1024, num_heads=16)
