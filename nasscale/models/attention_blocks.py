"""PyTorch modules of transformer stages: the patch embedding a stage opens with and the pre-norm transformer block.
Each mirrors a rule of ``nasscale.spec.attention_cost`` layer for layer.

The layout is torchvision's ``vision_transformer.py`` (a conv patch embedding with bias, a class token put first, a
learned position embedding, pre-norm encoder layers with an MLP of Linear-GELU-Linear, LayerNorm eps 1e-6), with
attention written as its matrix products rather than ``nn.MultiheadAttention``: its fused path and
``scaled_dot_product_attention`` are invisible to fvcore, so the counts would lose the attention's MACs. The qkv
projection packs queries, keys and values as ``nn.MultiheadAttention``'s ``in_proj`` does, so weights map one to one.

A block takes tokens (N, L, C) or a map (N, C, H, W), whose positions are its tokens (the attention stages of hybrid
networks), and gives back the same form. A stage with a class token makes tokens and hands them to the head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.models.blocks import DropPath, layer_norm, make_activation
from nasscale.spec.arch import BlockPlacement, StagePlacement
from nasscale.spec.channels import expanded_channels
from nasscale.spec.geometry import embeds_patches, opening_output, patch_side
from nasscale.spec.norm import Norm
from nasscale.spec.vocabulary import Activation

POSITION_EMBEDDING_STD = 0.02  # torchvision's init of pos_embedding (and timm's trunc_normal_ std)


class PatchEmbedding(nn.Module):
    """Zero-pad to a multiple of the patch, a patch x patch conv with stride patch (where ``project``), the class
    token first, the position embedding added. Gives tokens with a class token, else a map."""

    def __init__(self, in_channels: int, out_channels: int, *, patch: int, grid: int, project: bool,
                 class_token: bool, position_embedding: bool):
        super().__init__()
        self.patch = patch
        self.grid = grid  # patches per side at the architecture's resolution: the position embedding's
        self.projection: nn.Module = nn.Conv2d(in_channels, out_channels, patch, patch) if project else nn.Identity()
        self.class_token = nn.Parameter(torch.zeros(1, 1, out_channels)) if class_token else None
        self.position_embedding = None
        if position_embedding:
            tokens = grid * grid + (1 if class_token else 0)
            self.position_embedding = nn.Parameter(torch.empty(1, tokens, out_channels).normal_(
                std=POSITION_EMBEDDING_STD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_height, pad_width = -height % self.patch, -width % self.patch
        if pad_height or pad_width:
            x = F.pad(x, (0, pad_width, 0, pad_height))
        x = self.projection(x)
        if self.class_token is None and self.position_embedding is None:
            return x
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        if self.class_token is not None:
            tokens = torch.cat([self.class_token.expand(batch, -1, -1), tokens], dim=1)
        if self.position_embedding is not None:
            tokens = tokens + self._position_embedding(height, width)
        if self.class_token is not None:
            return tokens
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)

    def _position_embedding(self, height: int, width: int) -> torch.Tensor:
        """The embedding, resampled (bicubic, as timm's resample_abs_pos_embed) when the input is not the size the
        architecture was built for: a search trains at a proxy resolution."""
        embedding = self.position_embedding
        assert embedding is not None  # only called when there is one
        if height == width == self.grid:
            return embedding
        prefix = 1 if self.class_token is not None else 0
        channels = embedding.shape[-1]
        grid = embedding[:, prefix:].reshape(1, self.grid, self.grid, channels).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return torch.cat([embedding[:, :prefix], grid.permute(0, 2, 3, 1).reshape(1, height * width, channels)],
                         dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention: one linear to queries, keys and values, softmax(QK^T / sqrt(d)) V per head, an
    output projection."""

    def __init__(self, channels: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_channels = channels // num_heads
        self.scale = self.head_channels ** -0.5
        self.qkv = nn.Linear(channels, 3 * channels)
        self.projection = nn.Linear(channels, channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, channels = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, length, 3, self.num_heads, self.head_channels).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
        weights = ((query * self.scale) @ key.transpose(-2, -1)).softmax(dim=-1)
        out = (weights @ value).transpose(1, 2).reshape(batch, length, channels)
        return self.projection(out)


class TransformerBlock(nn.Module):
    """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)), each branch through drop path."""

    def __init__(self, channels: int, *, num_heads: int, hidden: int, activation: Activation,
                 drop_path_rate: float, norm: Norm):
        super().__init__()
        self.attention_norm = layer_norm(channels, norm)
        self.attention = SelfAttention(channels, num_heads)
        self.mlp_norm = layer_norm(channels, norm)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), make_activation(activation), nn.Linear(hidden, channels))
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # a map: its positions are the tokens
            batch, channels, height, width = x.shape
            tokens = self._tokens(x.flatten(2).transpose(1, 2))
            return tokens.transpose(1, 2).reshape(batch, channels, height, width)
        return self._tokens(x)

    def _tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.drop_path(self.attention(self.attention_norm(tokens)))
        return tokens + self.drop_path(self.mlp(self.mlp_norm(tokens)))


class ClassTokenPool(nn.Module):
    """The class_token head's pool: the first token of (N, L, C) tokens, as (N, C, 1, 1) so the head flattens it
    as it flattens a pooled map. The LayerNorm after it is ViT's final encoder norm: per token, so normalizing the
    class token alone gives what normalizing every token and keeping the first does."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0, :, None, None]


def build_patch_embedding(placement: StagePlacement) -> PatchEmbedding:
    """A transformer stage's opening layer (``placement.has_transition``)."""
    stage, in_channels = placement.stage, placement.in_channels
    channels, grid = opening_output(stage, in_channels, placement.input_size)
    return PatchEmbedding(in_channels, channels, patch=patch_side(stage), grid=grid,
                          project=embeds_patches(stage, in_channels), class_token=stage.class_token,
                          position_embedding=stage.position_embedding)


def build_transformer_block(block: BlockPlacement, drop_path_rate: float) -> TransformerBlock:
    stage = block.stage
    return TransformerBlock(block.out_channels, num_heads=stage.num_heads,
                            hidden=expanded_channels(block.out_channels, stage.expand_ratio),
                            activation=stage.activation, drop_path_rate=drop_path_rate, norm=block.norm)
