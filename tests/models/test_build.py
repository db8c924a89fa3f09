import pytest
import torch

from nasscale.models.blocks import ConvNeXtBlock, DropPath, ResidualBlock
from nasscale.models.build import build
from nasscale.presets.convnext import convnext_tiny
from nasscale.presets.efficientnet import efficientnet_b0, efficientnetv2_s
from nasscale.presets.mobile import mnasnet_b1
from nasscale.spec.arch import Arch
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType


def test_grayscale_any_resolution_any_classes(tiny_arch):
    model = build(tiny_arch.replace(resolution=37, num_classes=3)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 37, 37)).shape == (2, 3)


def test_channels_last_gives_the_same_output(tiny_arch):
    torch.manual_seed(0)
    model = build(tiny_arch).eval()
    images = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model(images)
        model = model.to(memory_format=torch.channels_last)
        actual = model(images.to(memory_format=torch.channels_last))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def test_residuals_follow_shape_and_skip():
    arch = Arch(stages=(
        Stage(block=BlockType.MBCONV, num_blocks=2, out_channels=8, stride=1, expand_ratio=3),
        Stage(block=BlockType.MBCONV, num_blocks=2, out_channels=16, stride=2, expand_ratio=3, skip=False),
    ), stem_channels=8, head_channels=16, resolution=16)
    blocks = [block for stage in build(arch).stages for block in stage]
    assert [block.use_residual for block in blocks] == [True, True, False, False]


def test_drop_path_ramps_linearly_and_only_trains():
    model = build(efficientnet_b0())
    rates = [module.rate for module in model.modules() if isinstance(module, DropPath)]
    # Blocks 0 and 1 change shape (no residual, no drop path); block 2 is the first with a residual.
    assert rates[0] == pytest.approx(0.2 * 2 / 16)
    assert rates == sorted(rates) and max(rates) < 0.2
    drop = DropPath(0.5).eval()
    x = torch.ones(4, 2, 3, 3)
    assert torch.equal(drop(x), x)


def test_block_structure_matches_the_papers():
    b0 = build(efficientnet_b0())
    first = b0.stages[0][0]
    assert isinstance(first, ResidualBlock) and "expand" not in dict(first.body.named_children())
    assert b0.stages[1][0].body.squeeze_excite.reduce.out_channels == 4  # max(1, int(16 * 0.25))
    fused = build(efficientnetv2_s()).stages[0][0].body
    assert list(dict(fused.named_children())) == ["conv"]  # expansion 1: a single 3x3 conv
    convnext = build(convnext_tiny())
    block = convnext.stages[0][0]
    assert isinstance(block, ConvNeXtBlock) and block.depthwise.kernel_size == (7, 7)
    assert torch.allclose(block.layer_scale, torch.full_like(block.layer_scale, 1e-6))
    assert len(convnext.stages[1]) == 4  # downsampling layer + 3 blocks
    assert isinstance(build(mnasnet_b1()).stem[2], torch.nn.ReLU)


def test_every_activation_builds():
    for activation in Activation:
        stage = Stage(block=BlockType.CONV, num_blocks=1, out_channels=4, stride=1, activation=activation)
        model = build(Arch(stages=(stage,), stem_channels=4, head_channels=8, resolution=8, activation=activation))
        with torch.no_grad():
            assert torch.isfinite(model.eval()(torch.randn(1, 3, 8, 8))).all()
