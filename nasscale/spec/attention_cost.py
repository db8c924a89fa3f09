"""Cost rules of transformer stages (ViT; the attention stages of hybrid networks), mirroring
``nasscale.models.attention_blocks`` layer by layer.

What counts: convolutions and linear layers as everywhere (``nasscale.spec.cost``), and self-attention's two matrix
products. For L tokens of width C split into h heads of width d = C / h, QK^T is h x L x L x d = L^2 C multiply-adds
and AV as many again, so attention adds 2 L^2 C whatever h is; the softmax, the 1/sqrt(d) scaling, the class token
and the position embedding (an addition) count zero. fvcore counts exactly this (its matmul handle; no softmax
handle), and torch's FlopCounterMode counts the batched products as bmm, so both oracles agree with this to the
unit. torchvision's published ViT figures count the same way (ViT-B/16: 17.564 GMACs at 224 px).

Light core: no torch, no numpy.
"""

from __future__ import annotations

from nasscale.spec.arch import BlockPlacement, StagePlacement
from nasscale.spec.channels import expanded_channels
from nasscale.spec.cost_primitives import ZERO, Cost, conv, linear, new_tuple, norm
from nasscale.spec.geometry import embeds_patches, opening_output, patch_side, transformer_tokens


def attention_products(tokens: int, channels: int) -> Cost:
    """QK^T and AV: 2 L^2 C multiply-adds, no parameters."""
    return new_tuple(Cost, (0, 2 * tokens * tokens * channels))


def self_attention_cost(channels: int, tokens: int) -> Cost:
    """qkv projection (one linear to 3C, with bias), the two products, the output projection."""
    return linear(channels, 3 * channels, tokens) + attention_products(tokens, channels) + linear(channels, channels,
                                                                                                  tokens)


def transformer_block_cost(block: BlockPlacement) -> Cost:
    """LayerNorm, self-attention; LayerNorm, MLP (linear, activation, linear). The residual additions count zero."""
    channels = block.out_channels
    hidden = expanded_channels(channels, block.stage.expand_ratio)
    tokens = transformer_tokens(block.stage, block.input_size)
    return (norm(channels) + self_attention_cost(channels, tokens)
            + norm(channels) + linear(channels, hidden, tokens) + linear(hidden, channels, tokens))


def patch_embedding_cost(placement: StagePlacement) -> Cost:
    """A transformer stage's opening: the patch conv (with bias) where it has one, the class token (C parameters)
    and the position embedding (one C-wide vector per token)."""
    stage, in_channels = placement.stage, placement.in_channels
    channels, grid = opening_output(stage, in_channels, placement.input_size)
    total = ZERO
    if embeds_patches(stage, in_channels):
        total = conv(in_channels, channels, patch_side(stage), grid, bias=True)
    tokens = transformer_tokens(stage, grid)
    embeddings = (channels if stage.class_token else 0) + (tokens * channels if stage.position_embedding else 0)
    return total + new_tuple(Cost, (embeddings, 0))
