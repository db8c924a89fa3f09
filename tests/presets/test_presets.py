"""Golden counts: every preset against the published figures (torchvision's metadata, the papers)."""

import pytest

from nasscale.models.counts import measure_counts
from nasscale.presets.efficientnet import efficientnet_b0
from nasscale.presets.registry import PRESETS, get_preset, preset_arch
from nasscale.spec.cost import cost
from nasscale.spec.rescaling import scale_arch

# name: (params, MACs, MACs tolerance). Exact MACs where published to the unit; torchvision's 4-decimal
# GMACs elsewhere (tolerance half a unit of the last digit).
GOLDEN = {
    "efficientnet_b0": (5_288_548, 385_814_752, 0),
    "efficientnet_b1": (7_794_184, 686_802_832, 0),
    "efficientnet_b2": (9_109_994, 993_561_872, 0),
    "efficientnet_b3": (12_233_232, 1_827_141_392, 0),
    "efficientnet_b4": (19_341_616, 4_393_771_024, 0),
    "efficientnet_b5": (30_389_784, 10_266_384_752, 0),
    "efficientnet_b6": (43_040_704, 19_067_593_536, 0),
    "efficientnet_b7": (66_347_960, 37_745_884_192, 0),
    "efficientnetv2_s": (21_458_488, 8_365_617_152, 0),
    "efficientnetv2_m": (54_139_356, 24_582_460_384, 0),
    "efficientnetv2_l": (118_515_272, 56_079_699_008, 0),
    "convnext_tiny": (28_589_128, 4_455_500_000, 50_000),
    "convnext_small": (50_223_688, 8_683_700_000, 50_000),
    "convnext_base": (88_591_464, 15_354_700_000, 50_000),
    "convnext_large": (197_767_336, 34_361_400_000, 50_000),
    "mnasnet_b1": (4_383_312, 314_400_000, 50_000),
    "mobilenet_v2": (3_504_872, 300_800_000, 50_000),
    "mobilenet_v3_large": (5_483_032, 216_600_000, 50_000),
    "mobilenet_v3_small": (2_542_856, 56_500_000, 50_000),
    "resnet18": (11_689_512, 1_814_100_000, 50_000),
    "resnet34": (21_797_672, 3_663_800_000, 50_000),
    "resnet50": (25_557_032, 4_089_200_000, 50_000),
    "resnet101": (44_549_160, 7_801_400_000, 50_000),
    "resnet152": (60_192_808, 11_513_600_000, 50_000),
    "resnext50_32x4d": (25_028_904, 4_230_500_000, 50_000),
    "regnet_x_400mf": (5_495_976, 413_800_000, 50_000),
    "regnet_y_400mf": (4_344_144, 401_800_000, 50_000),
    "regnet_y_800mf": (6_432_512, 833_900_000, 50_000),
    "regnet_y_1_6gf": (11_202_430, 1_612_100_000, 50_000),
    "densenet121": (7_978_856, 2_834_200_000, 50_000),
    "shufflenet_v2_x1_0": (2_278_604, 144_900_000, 50_000),
    "squeezenet1_0": (1_248_424, 818_900_000, 50_000),
    "squeezenet1_1": (1_235_496, 349_200_000, 50_000),
    "googlenet": (6_624_904, 1_498_400_000, 50_000),
    "vgg16": (138_357_544, 15_470_300_000, 50_000),
    "alexnet": (61_100_840, 714_200_000, 50_000),
    # LeNet-5 with 32x32 input: convs 156 + 2,416, linears 48,120 + 10,164 + 850; MACs 117,600 + 240,000 + 58,920.
    "lenet5": (61_706, 416_520, 0),
    # torchvision's ViT metadata: 3-decimal GFLOPS (multiply-adds, attention's QK^T and AV included).
    "vit_b_16": (86_567_656, 17_564_000_000, 500_000),
    "vit_b_32": (88_224_232, 4_409_000_000, 500_000),
    "vit_l_16": (304_326_632, 61_555_000_000, 500_000),
    # torchvision's inception_v3 without its training-only auxiliary classifier (27,161,264 - 3,326,696 params).
    "inception_v3": (23_834_568, 5_713_000_000, 500_000),
}

# No torchvision model: the papers' rounded figures, (params, params tolerance, MACs, MACs tolerance).
PAPER = {
    "mobilenet_v1": (4_200_000, 50_000, 569_000_000, 500_000),  # Howard et al. 2017: 4.2M, 569M mult-adds
    "van_b0": (4_100_000, 50_000, 900_000_000, 50_000_000),  # Guo et al. 2022: 4.1M, 0.9 GFLOPs
    "se_resnet50": (28_100_000, 50_000, 4_091_699_200, 0),  # Hu et al. 2018: 28.1M; MACs see below
    "resnetv2_50": (25_549_352, 0, 4_089_184_256, 0),  # see test_resnetv2_50_is_resnet50_pre_activated
    "inception_resnet_v2": (55_843_464, 0, 13_200_000_000, 50_000_000),  # timm's model card: 13.2 GMACs
}


def test_every_preset_has_a_golden_check():
    assert set(PRESETS) == set(GOLDEN) | set(PAPER) | {"mnasnet_a1"}
    assert not set(GOLDEN) & set(PAPER)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_preset_matches_the_papers_rounded_figures(name):
    params, params_tolerance, macs, macs_tolerance = PAPER[name]
    counted = cost(preset_arch(name))
    assert abs(counted.params - params) <= params_tolerance
    assert abs(counted.macs - macs) <= macs_tolerance
    assert get_preset(name).matches(counted.params, counted.macs)


def test_se_resnet50_adds_exactly_its_squeeze_excite_layers():
    # Each bottleneck of width c gains two linear layers c -> c/16 -> c with biases.
    widths = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3
    resnet50, se_resnet50 = cost(preset_arch("resnet50")), cost(preset_arch("se_resnet50"))
    assert se_resnet50.params - resnet50.params == sum(c * c // 8 + c // 16 + c for c in widths)
    assert se_resnet50.macs - resnet50.macs == sum(c * c // 8 for c in widths)
    assert se_resnet50.params == 28_088_024


def test_resnetv2_50_is_resnet50_pre_activated():
    # He et al. 2016b: the same convolutions as ResNet-50 (so the same MACs). BN moves before each conv: the
    # stem's BN and each block's output BN and projection BN go; each block gains a BN over its input, and a
    # final BN over 2048 channels precedes the pool. Each BN has 2 parameters per channel.
    v1, v2 = preset_arch("resnet50"), preset_arch("resnetv2_50")
    assert [(s.num_blocks, s.out_channels, s.stride) for s in v1.stages] == [
        (s.num_blocks, s.out_channels, s.stride) for s in v2.stages] == [
        (3, 256, 1), (4, 512, 2), (6, 1024, 2), (3, 2048, 2)]
    assert cost(v2).macs == cost(v1).macs == 4_089_184_256
    widths = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    inputs = [64, 256, 256, 256, 512, 512, 512, 512] + [1024] * 5 + [1024, 2048, 2048]
    removed = 64 + sum(4 * w for w in widths) + (256 + 512 + 1024 + 2048)
    added = sum(inputs) + 2048
    assert cost(v1).params - cost(v2).params == 2 * (removed - added) == 7_680


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_preset_matches_published_counts(name):
    params, macs, tolerance = GOLDEN[name]
    counted = cost(preset_arch(name))
    assert counted.params == params
    assert abs(counted.macs - macs) <= tolerance
    assert get_preset(name).matches(counted.params, counted.macs)


def test_mnasnet_a1_within_one_percent_of_the_paper():
    counted = cost(preset_arch("mnasnet_a1"))
    assert counted.params == 3_887_038 and counted.macs == 311_579_072
    assert abs(counted.params - 3.9e6) / 3.9e6 < 0.01 and abs(counted.macs - 312e6) / 312e6 < 0.01


def test_efficientnet_b3_and_b7_stages_come_from_the_scaling_rules():
    b3 = scale_arch(efficientnet_b0(), width=1.2, depth=1.4, resolution=300)
    assert b3.stem_channels == 40 and b3.head_channels == 1536
    assert [(s.out_channels, s.num_blocks) for s in b3.stages] == [
        (24, 2), (32, 3), (48, 3), (96, 5), (136, 5), (232, 6), (384, 2)]
    b7 = preset_arch("efficientnet_b7")
    assert [(s.out_channels, s.num_blocks) for s in b7.stages] == [
        (32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)]
    assert (b7.stem_channels, b7.head_channels, b7.resolution, b7.dropout) == (64, 2560, 600, 0.5)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnetv2_s", "convnext_tiny", "mnasnet_a1",
                                  "mnasnet_b1", "mobilenet_v2"])
def test_built_preset_agrees_with_both_oracles(name):
    arch = preset_arch(name)
    analytic = cost(arch)
    counts = measure_counts(arch)
    assert (counts.params_built, counts.macs_fvcore, counts.macs_torch) == (
        analytic.params, analytic.macs, analytic.macs)


def test_preset_names_are_forgiving_and_unknown_names_say_how_to_list():
    assert get_preset("EfficientNet-B0").name == "efficientnet_b0"
    with pytest.raises(KeyError, match="unknown preset 'resnet9'; run 'nasscale presets'"):
        get_preset("resnet9")
