"""build(arch) makes every norm from arch.norm, and zero_init_last_bn starts each residual block as its shortcut."""

import random

import pytest
import torch
from torch import nn

from nasscale.models.blocks import ResidualBlock
from nasscale.models.build import build
from nasscale.models.classic_blocks import ResNetBlock
from nasscale.presets.registry import preset_arch
from nasscale.spec.norm import Norm
from nasscale.spec.random_arch import random_arch
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, StemType

SETTINGS = Norm(batch_norm_eps=2.5e-4, batch_norm_momentum=0.03, layer_norm_eps=3e-5)


def norm_modules(model: nn.Module) -> tuple[list[nn.BatchNorm2d], list[nn.LayerNorm]]:
    modules = list(model.modules())
    return ([module for module in modules if isinstance(module, nn.modules.batchnorm._BatchNorm)],
            [module for module in modules if isinstance(module, nn.LayerNorm)])


@pytest.mark.parametrize("seed", range(60))
def test_every_norm_of_every_block_type_takes_the_settings(seed):
    arch = random_arch(random.Random(seed), scalable=False).replace(norm=SETTINGS)
    with torch.device("meta"):
        batch_norms, layer_norms = norm_modules(build(arch))
    assert all((module.eps, module.momentum) == (2.5e-4, 0.03) for module in batch_norms)
    assert all(module.eps == 3e-5 for module in layer_norms)


def test_the_random_architectures_reach_every_norm_a_block_builds():
    blocks, stems, batch_total, layer_total = set(), set(), 0, 0
    for seed in range(60):
        arch = random_arch(random.Random(seed), scalable=False)
        blocks |= {stage.block for stage in arch.stages}
        stems.add(arch.stem)
        with torch.device("meta"):
            batch_norms, layer_norms = norm_modules(build(arch))
        batch_total, layer_total = batch_total + len(batch_norms), layer_total + len(layer_norms)
    assert blocks == set(BlockType) and stems == set(StemType) and batch_total and layer_total


def residual_stage(block: BlockType, channels: int = 8) -> Stage:
    fields = {"expand_ratio": 3} if block in (BlockType.MBCONV, BlockType.FUSED_MBCONV) else {}
    return Stage(block=block, num_blocks=2, out_channels=channels, stride=1, activation=Activation.RELU, **fields)


def test_zero_init_zeroes_only_the_last_batch_norm_of_residual_branches():
    stages = (*(residual_stage(block) for block in (BlockType.BASIC, BlockType.BOTTLENECK, BlockType.SE_BOTTLENECK,
                                                    BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV,
                                                    BlockType.CONV)),
              Stage(block=BlockType.BASIC, num_blocks=1, out_channels=16, stride=2, skip=False))
    arch = preset_arch("resnet18").replace(stages=stages, resolution=32, num_classes=10,
                                           norm=Norm(zero_init_last_bn=True))
    model = build(arch)
    residual = [module for module in model.modules()
                if isinstance(module, ResidualBlock | ResNetBlock) and module.use_residual]
    assert len(residual) == 14
    last = {id(block_norms[-1]) for block_norms in (norm_modules(block.body)[0] for block in residual)}
    for module in norm_modules(model)[0]:
        assert torch.all(module.weight == (0.0 if id(module) in last else 1.0))
    unset = build(arch.replace(norm=Norm()))
    assert all(torch.all(module.weight == 1.0) for module in norm_modules(unset)[0])


def test_a_zero_initialised_residual_block_starts_as_its_shortcut():
    model = build(preset_arch("se_resnet50").replace(resolution=32, num_classes=10)).eval()
    features = torch.randn(2, 256, 8, 8).relu()  # a post-activation input, as the block receives
    block = model.stages[0][1]  # 256 -> 256, identity shortcut
    assert isinstance(block, ResNetBlock) and isinstance(block.shortcut, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(block(features), features)
    plain = build(preset_arch("resnet50").replace(resolution=32, num_classes=10)).eval()
    with torch.no_grad():
        assert not torch.allclose(plain.stages[0][1](features), features)
