"""Inception-v3 and Inception-ResNet-v2: the presets' counts against torchvision's and timm's, the analytic cost against
the built model and both oracles on random Inception modules at odd resolutions, the references' structure, and
the spec's rules for these modules."""

import random

import pytest
import torch
from torch import nn

from nasscale.errors import SpecError
from nasscale.models.build import build
from nasscale.models.counts import measure_counts
from nasscale.models.inception_blocks import MixedBlock
from nasscale.presets.inception import INCEPTION_V3_AUX_PARAMS
from nasscale.presets.registry import get_preset, preset_arch
from nasscale.spec.arch import Arch, iter_stages
from nasscale.spec.cost import cost
from nasscale.spec.inception import MIXED_LAYOUTS, mixed_output_channels
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation, BlockType, HeadType, StemType
from tests.spec.oracles import assert_cost_matches_oracles

ODD_RESOLUTIONS = (27, 33, 41, 75, 83, 99)  # 27 px is the smallest the Inception stem takes


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mixed_stage(rng: random.Random, block: BlockType, in_channels: int) -> Stage:
    layout = MIXED_LAYOUTS[block]
    branches = tuple(rng.choice([1, 2, 3, 5, 8]) for _ in range(layout.convs))
    fields = {"residual_scale": rng.choice([0.1, 0.2, 1.0]), "output_activation": rng.random() < 0.6} \
        if layout.residual else {}
    return Stage(block=block, num_blocks=1 if layout.reduction else rng.randint(1, 2),
                 out_channels=mixed_output_channels(block, branches, in_channels), stride=2 if layout.reduction else 1,
                 activation=rng.choice([Activation.RELU, Activation.SILU]), branches=branches, **fields)


def random_inception_arch(rng: random.Random) -> Arch:
    """Inception modules of every kind after the Inception stem or a plain one, at an odd resolution; a draw whose
    reductions meet a map too small for them is drawn again."""
    while True:
        try:
            return _random_inception_arch_once(rng)
        except SpecError:
            continue


def _random_inception_arch_once(rng: random.Random) -> Arch:
    stem = rng.choice([StemType.INCEPTION, StemType.CONV, StemType.NONE])
    stem_channels = 0 if stem is StemType.NONE else rng.choice([4, 8])
    width, stages = stem_channels or 3, []
    for block in rng.sample(sorted(MIXED_LAYOUTS), rng.randint(1, 3)):
        stages.append(mixed_stage(rng, block, width))
        width = stages[-1].out_channels
    head = rng.choice([HeadType.POOL, HeadType.CONV])
    return Arch(stages=tuple(stages), stem=stem, stem_channels=stem_channels, head=head,
                head_channels=16 if head is HeadType.CONV else 0, resolution=rng.choice(ODD_RESOLUTIONS),
                num_classes=rng.choice([3, 10]), activation=Activation.RELU, dropout=0.0)


@pytest.mark.parametrize("seed", range(30))
def test_analytic_cost_equals_built_model_and_both_oracles(seed):
    arch = random_inception_arch(random.Random(seed))
    assert_cost_matches_oracles(arch)


def test_the_random_architectures_cover_every_module_and_the_stem():
    archs = [random_inception_arch(random.Random(seed)) for seed in range(30)]
    assert {stage.block for arch in archs for stage in arch.stages} == set(MIXED_LAYOUTS)
    assert StemType.INCEPTION in {arch.stem for arch in archs}
    assert {stage.output_activation for arch in archs for stage in arch.stages} == {False, True}


# ------------------------------------------------------------------------------------------------ the presets


def test_inception_v3_is_torchvisions_without_the_auxiliary_classifier():
    # InceptionAux: conv0 1x1 768 -> 128 + BN, conv1 5x5 128 -> 768 + BN, fc 768 -> 1000.
    assert INCEPTION_V3_AUX_PARAMS == 98_304 + 256 + 2_457_600 + 1_536 + 769_000 == 3_326_696
    counted = cost(preset_arch("inception_v3"))
    assert counted.params + INCEPTION_V3_AUX_PARAMS == 27_161_264  # torchvision's num_params
    assert abs(counted.macs - 5.713e9) <= 0.0005e9  # torchvision's 5.713 GFLOPS (eval mode: no aux)
    assert get_preset("inception_v3").matches(*counted)


def test_inception_resnet_v2_has_timms_parameters():
    counted = cost(preset_arch("inception_resnet_v2"))
    assert counted.params == 55_843_464
    assert get_preset("inception_resnet_v2").matches(*counted)


@pytest.mark.parametrize("name", ["inception_v3", "inception_resnet_v2"])
def test_presets_agree_with_both_oracles_at_a_small_odd_resolution(name):
    arch = preset_arch(name).replace(resolution=107)
    counts, analytic = measure_counts(arch), cost(arch)
    assert (counts.params_built, counts.macs_fvcore, counts.macs_torch) == (analytic.params, analytic.macs,
                                                                             analytic.macs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v3", "inception_resnet_v2"])
def test_presets_agree_with_both_oracles_at_299(name):
    counts, analytic = measure_counts(preset_arch(name)), cost(preset_arch(name))
    assert (counts.params_built, counts.macs_fvcore, counts.macs_torch) == (analytic.params, analytic.macs,
                                                                             analytic.macs)


def test_inception_v3_sizes_and_widths_are_torchvisions():
    """torchvision's comments: 192 x 35 x 35 after the stem, then 288 x 35 x 35, 768 x 17 x 17, 1280 x 8 x 8."""
    placements = list(iter_stages(preset_arch("inception_v3")))
    assert [(placement.in_channels, placement.input_size) for placement in placements] == [
        (192, 35), (256, 35), (288, 35), (768, 17), (768, 17), (768, 17), (768, 17), (1280, 8)]
    assert [stage.out_channels for stage in preset_arch("inception_v3").stages][-1] == 2048


def test_inception_v3_modules_have_torchvisions_convs():
    with torch.device("meta"):
        model = build(preset_arch("inception_v3"))
    stem = [tuple(layer.weight.shape) for layer in model.stem if isinstance(layer, nn.Conv2d)]
    assert stem == [(32, 3, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (80, 64, 1, 1), (192, 80, 3, 3)]
    mixed_6e = model.stages[5][0]  # InceptionC(768, channels_7x7=192)
    shapes = [(tuple(layer.weight.shape), layer.padding) for layer in mixed_6e.modules()
              if isinstance(layer, nn.Conv2d)]
    assert shapes[:4] == [((192, 768, 1, 1), (0, 0)), ((192, 768, 1, 1), (0, 0)), ((192, 192, 1, 7), (0, 3)),
                          ((192, 192, 7, 1), (3, 0))]
    mixed_7b = model.stages[7][0]  # InceptionE(1280): the 3x3 branch forks into 1x3 and 3x1
    assert [tuple(layer.weight.shape) for layer in mixed_7b.branches.parts[1].modules()
            if isinstance(layer, nn.Conv2d)] == [(384, 1280, 1, 1), (384, 384, 1, 3), (384, 384, 3, 1)]
    pools = [layer for layer in model.stages[0][0].modules() if isinstance(layer, nn.AvgPool2d)]
    assert len(pools) == 1 and pools[0].count_include_pad  # F.avg_pool2d(x, 3, stride=1, padding=1)


def test_inception_resnet_v2_blocks_scale_add_and_activate():
    arch = preset_arch("inception_resnet_v2").replace(resolution=75, num_classes=10)
    model = build(arch).eval()
    blocks = [module for module in model.modules() if isinstance(module, MixedBlock) and module.residual]
    assert [block.residual_scale for block in blocks] == [0.17] * 10 + [0.10] * 20 + [0.20] * 9 + [1.0]
    assert isinstance(blocks[-1].activation, nn.Identity) and isinstance(blocks[0].activation, nn.ReLU)
    mixed_5b = model.stages[0][0]
    assert not [layer for layer in mixed_5b.modules() if isinstance(layer, nn.AvgPool2d)][0].count_include_pad
    block = blocks[0]
    features = torch.randn(1, 320, 7, 7)
    with torch.no_grad():
        expected = torch.relu(features + 0.17 * block.projection(block.branches(features)))
        torch.testing.assert_close(block(features), expected)


# ------------------------------------------------------------------------------------------------ the rules


@pytest.mark.parametrize(
    ("block", "changes", "message"),
    [
        (BlockType.INCEPTION_V3_A, {"branches": (1, 2, 3)}, "stage.branches: must list 7 widths, one per conv"),
        (BlockType.INCEPTION_V3_B, {"stride": 1}, "stage.stride: a inception_v3_b stage is one reduction block at "
                                                   "stride 2, got 1 at stride 1"),
        (BlockType.INCEPTION_V3_D, {"num_blocks": 2}, "stage.num_blocks: a inception_v3_d stage is one reduction"),
        (BlockType.INCEPTION_V3_E, {"stride": 2}, "stage.stride: must be 1: inception_v3_e blocks keep the size"),
        (BlockType.INCEPTION_V3_A, {"out_channels": 9}, "stage.out_channels: must be the width of the concatenated "
                                                         "branches, 11, got 9"),
        (BlockType.INCEPTION_RESNET_A, {"residual_scale": 0}, "stage.residual_scale: must be positive, got 0"),
        (BlockType.INCEPTION_V3_A, {"residual_scale": 0.5}, "stage.residual_scale: does not apply to inception_v3_a"),
    ],
)
def test_module_rules(block, changes, message):
    layout = MIXED_LAYOUTS[block]
    branches = (1, 2, 3, 1, 2, 3, 4, 1, 2, 3)[:layout.convs]
    fields = {"block": block, "num_blocks": 1, "stride": 2 if layout.reduction else 1, "branches": branches,
              "out_channels": mixed_output_channels(block, branches, 8)}
    with pytest.raises(SpecError, match=message):
        Stage(**fields | changes)


def test_widths_that_depend_on_the_input_are_checked_in_the_network():
    reduction = Stage(block=BlockType.INCEPTION_V3_B, num_blocks=1, out_channels=10, stride=2, branches=(4, 2, 2, 2))
    residual = Stage(block=BlockType.INCEPTION_RESNET_B, num_blocks=1, out_channels=8, stride=1, branches=(2, 2, 2, 2))
    fields = {"stem_channels": 8, "head_channels": 0, "head": HeadType.POOL, "resolution": 33}
    Arch(stages=(residual, Stage(block=BlockType.INCEPTION_V3_B, num_blocks=1, out_channels=14, stride=2,
                                 branches=(4, 2, 2, 2))), **fields)
    with pytest.raises(SpecError, match=r"stages\[0\].out_channels: must be 14, its branches' plus its input's \(8\)"):
        Arch(stages=(reduction,), **fields)
    with pytest.raises(SpecError, match=r"stages\[0\].out_channels: must be 4, its input's width"):
        Arch(stages=(residual,), **fields | {"stem_channels": 4})
    with pytest.raises(SpecError, match="resolution: 26 is too small for the inception stem"):
        preset_arch("inception_v3").replace(resolution=26)
