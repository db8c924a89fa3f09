"""Golden counts: every preset against the published figures (torchvision's metadata, the papers)."""

import pytest

from nasscale.cost import cost
from nasscale.measure import measure_counts
from nasscale.presets import PRESETS, efficientnet_b0, get_preset, preset_arch
from nasscale.scaling import scale_arch

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
}


def test_every_preset_has_a_golden_check():
    assert set(PRESETS) == set(GOLDEN) | {"mnasnet_a1"}


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
