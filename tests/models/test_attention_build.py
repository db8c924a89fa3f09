"""Transformer stages as built: torchvision's encoder layer computed by hand (attention as its matrix products), the
class token read by the head, images padded to whole patches, the position embedding resampled at another size, and
blocks over a map's positions."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nasscale.models.attention_blocks import PatchEmbedding, TransformerBlock
from nasscale.models.build import build
from nasscale.presets.registry import preset_arch
from nasscale.spec.arch import Arch
from nasscale.spec.norm import Norm
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


class TorchvisionEncoderLayer(nn.Module):
    """torchvision's EncoderBlock (vision_transformer.py) at dropout 0: nn.MultiheadAttention and an MLP."""

    def __init__(self, channels: int, heads: int, hidden: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(channels, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(tokens)
        x = self.self_attention(x, x, x, need_weights=False)[0] + tokens
        return x + self.mlp(self.ln_2(x))


def copied_reference(block: TransformerBlock, channels: int, heads: int, hidden: int) -> TorchvisionEncoderLayer:
    reference = TorchvisionEncoderLayer(channels, heads, hidden)
    with torch.no_grad():
        for ours, theirs in ((block.attention_norm, reference.ln_1), (block.mlp_norm, reference.ln_2)):
            theirs.weight.copy_(ours.weight + torch.randn_like(ours.weight))  # not the trivial ones
            ours.weight.copy_(theirs.weight)
        reference.self_attention.in_proj_weight.copy_(block.attention.qkv.weight)
        reference.self_attention.in_proj_bias.copy_(block.attention.qkv.bias)
        reference.self_attention.out_proj.weight.copy_(block.attention.projection.weight)
        reference.self_attention.out_proj.bias.copy_(block.attention.projection.bias)
        for index in (0, 2):
            reference.mlp[index].load_state_dict(block.mlp[index].state_dict())
    return reference


def test_a_block_is_torchvisions_encoder_layer_with_the_same_weights():
    """The qkv projection packs queries, keys and values as nn.MultiheadAttention's in_proj: weights map one to one."""
    block = TransformerBlock(48, num_heads=6, hidden=96, activation=Activation.GELU, drop_path_rate=0.0,
                             norm=Norm()).eval()
    reference = copied_reference(block, 48, 6, 96).eval()
    tokens = torch.randn(3, 17, 48)
    with torch.no_grad():
        torch.testing.assert_close(block(tokens), reference(tokens), rtol=1e-5, atol=1e-5)


def test_a_block_over_a_map_attends_over_its_positions():
    block = TransformerBlock(16, num_heads=4, hidden=32, activation=Activation.GELU, drop_path_rate=0.0,
                             norm=Norm()).eval()
    features = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        as_tokens = block(features.flatten(2).transpose(1, 2))
        torch.testing.assert_close(block(features), as_tokens.transpose(1, 2).reshape(2, 16, 5, 5))


def test_vit_is_patches_class_token_encoder_and_a_head_on_the_class_token():
    arch = preset_arch("vit_b_32").replace(resolution=64, num_classes=10)
    arch = arch.replace(stages=(dataclasses.replace(arch.stages[0], num_blocks=2, out_channels=48, num_heads=4),))
    model = build(arch).eval()
    embedding, *blocks = model.stages[0]
    assert isinstance(embedding, PatchEmbedding) and all(isinstance(block, TransformerBlock) for block in blocks)
    assert tuple(embedding.projection.weight.shape) == (48, 3, 32, 32) and embedding.projection.bias is not None
    assert tuple(embedding.position_embedding.shape) == (1, 2 * 2 + 1, 48)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        patches = embedding.projection(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([embedding.class_token.expand(2, -1, -1), patches], 1) + embedding.position_embedding
        for block in blocks:
            tokens = block(tokens)
        expected = model.head.classifier(model.head.norm(tokens)[:, 0])  # the final LayerNorm, then the class token
        torch.testing.assert_close(model(images), expected)


def test_images_are_zero_padded_to_whole_patches():
    arch = preset_arch("vit_b_16").replace(resolution=30, num_classes=10)
    arch = arch.replace(stages=(dataclasses.replace(arch.stages[0], num_blocks=1, out_channels=24, num_heads=2),))
    model = build(arch).eval()
    image = torch.randn(1, 3, 30, 30)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model(F.pad(image, (0, 2, 0, 2))))


def test_position_embedding_is_resampled_at_another_input_size():
    """A search trains at a proxy resolution: the embedding built for 4 x 4 patches is resampled for 2 x 2."""
    stage = Stage(block=BlockType.TRANSFORMER, num_blocks=1, out_channels=16, stride=1, patch_size=4, num_heads=2,
                  class_token=True, position_embedding=True)
    arch = Arch(stages=(stage,), stem=StemType.NONE, stem_channels=0, head=HeadType.CLASS_TOKEN, head_channels=0,
                resolution=16, in_channels=1, num_classes=10)
    model = build(arch)
    embedding = model.stages[0][0]
    assert embedding._position_embedding(4, 4) is embedding.position_embedding
    resampled = embedding._position_embedding(2, 2)
    assert resampled.shape == (1, 5, 16)
    torch.testing.assert_close(resampled[:, 0], embedding.position_embedding[:, 0])  # the class token's stays
    loss = F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert embedding.position_embedding.grad is not None and torch.isfinite(loss)


def test_hybrid_stages_take_and_give_maps():
    stages = (Stage(block=BlockType.MBCONV, num_blocks=1, out_channels=16, stride=2, expand_ratio=4),
              Stage(block=BlockType.TRANSFORMER, num_blocks=2, out_channels=32, stride=2, num_heads=4,
                    position_embedding=True),
              Stage(block=BlockType.CONVNEXT, num_blocks=1, out_channels=32, stride=1, expand_ratio=4))
    model = build(Arch(stages=stages, stem_channels=8, head=HeadType.NORM, head_channels=0, resolution=33)).eval()
    with torch.no_grad():
        features = model.stages[1](model.stages[0](model.stem(torch.randn(1, 3, 33, 33))))
    assert features.shape == (1, 32, 5, 5)  # 33 -> 17 (stem) -> 9 (mbconv) -> ceil(9 / 2) = 5 (2x2 patches)
    embedding = model.stages[1][0]
    assert tuple(embedding.projection.weight.shape) == (32, 16, 2, 2) and embedding.class_token is None


def test_vit_b_16_has_torchvisions_layer_shapes():
    with torch.device("meta"):
        model = build(preset_arch("vit_b_16"))
    shapes = {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}
    assert shapes["stages.0.0.projection.weight"] == (768, 3, 16, 16)  # conv_proj
    assert shapes["stages.0.0.class_token"] == (1, 1, 768) and shapes["stages.0.0.position_embedding"] == (1, 197, 768)
    assert shapes["stages.0.1.attention.qkv.weight"] == (2304, 768)  # self_attention.in_proj_weight
    assert shapes["stages.0.12.mlp.2.weight"] == (768, 3072) and "stages.0.13.mlp.0.weight" not in shapes
    assert shapes["head.norm.weight"] == (768,) and shapes["head.classifier.weight"] == (1000, 768)  # encoder.ln, head
