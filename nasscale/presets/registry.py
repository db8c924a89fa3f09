"""The preset registry: every reference architecture by name, with the published numbers it must reproduce
(``PRESETS``), looked up by ``get_preset``, ``preset_arch`` and ``resolve_arch`` (a preset or a file).

EfficientNet B1-B7 are derived from B0 by the scaling rules with the released (width, depth,
resolution) coefficients, not typed in: those rules are what ``nasscale scale`` builds on. The classic
families (ResNet to VAN) live in ``nasscale.presets.classic``; RegNets come from their six
parameters through RegNet's width rule.

Light core: no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasscale.errors import UnknownNameError
from nasscale.presets import classic
from nasscale.presets.convnext import convnext_base, convnext_large, convnext_small, convnext_tiny
from nasscale.presets.efficientnet import (
    efficientnet_b0,
    efficientnetv2_l,
    efficientnetv2_m,
    efficientnetv2_s,
    scaled_efficientnet,
)
from nasscale.presets.inception import INCEPTION_V3_AUX_PARAMS, inception_resnet_v2, inception_v3
from nasscale.presets.mobile import mnasnet_a1, mnasnet_b1, mobilenet_v2
from nasscale.presets.transformer import vit_b_16, vit_b_32, vit_l_16
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost_report
from nasscale.spec.serialization import load_arch_file

# ------------------------------------------------------------------------------------------------- table

# The published figures below are facts from torchvision's model metadata and the papers.


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    family: str
    factory: Callable[[], Arch]
    reference_params: int  # torchvision's num_params, or the paper's figure where noted
    reference_macs: int  # published multiply-adds at the preset's resolution, 1000 classes
    # Where a reference is published rounded (4.4555 GMACs), half its last digit; 0 means exact.
    params_tolerance: int = 0
    macs_tolerance: int = 0
    note: str = ""

    def arch(self) -> Arch:
        return self.factory()

    def matches(self, params: int, macs: int) -> bool:
        return (abs(params - self.reference_params) <= self.params_tolerance
                and abs(macs - self.reference_macs) <= self.macs_tolerance)


# Half a unit of the 4th decimal of a GMACs figure (torchvision publishes "4.4555"), of the 3rd ("17.564") and of
# the 1st.
GMACS_4DP = 50_000
GMACS_3DP = 500_000
GMACS_1DP = 50_000_000  # timm's model cards ("GMACs: 13.2")


def _efficientnet_factory(name: str) -> Callable[[], Arch]:
    return lambda: scaled_efficientnet(name)


def _regnet_factory(name: str) -> Callable[[], Arch]:
    return lambda: classic.regnet(name)


def _torchvision(name: str, family: str, factory: Callable[[], Arch], params: int, gmacs: str) -> Preset:
    """A preset checked against torchvision's parameter count and its 4-decimal GMACs."""
    return Preset(name, family, factory, params, round(float(gmacs) * 1e9), macs_tolerance=GMACS_4DP,
                  note=f"MACs published as {gmacs} G")


# torchvision's ViT metadata gives 3-decimal GFLOPS (MACs), counting attention's QK^T and AV as MACs.
TRANSFORMER_PRESETS = tuple(
    Preset(name, "vit", factory, params, round(float(gmacs) * 1e9), macs_tolerance=GMACS_3DP,
           note=f"MACs published as {gmacs} G (attention's matrix products included)")
    for name, factory, params, gmacs in (
        ("vit_b_16", vit_b_16, 86_567_656, "17.564"),
        ("vit_b_32", vit_b_32, 88_224_232, "4.409"),
        ("vit_l_16", vit_l_16, 304_326_632, "61.555"),
    )
)


INCEPTION_PRESETS = (
    Preset("inception_v3", "inception", inception_v3, 27_161_264 - INCEPTION_V3_AUX_PARAMS, 5_713_000_000,
           macs_tolerance=GMACS_3DP,
           note="torchvision: 27,161,264 params with the auxiliary classifier (3,326,696, training only), left out "
                "here; MACs published as 5.713 G (eval mode, no auxiliary classifier), at 299 px"),
    Preset("inception_resnet_v2", "inception", inception_resnet_v2, 55_843_464, 13_200_000_000,
           macs_tolerance=GMACS_1DP,
           note="timm: 55,843,464 params at 299 px; MACs published as 13.2 G (timm's model card)"),
)


CLASSIC_PRESETS = (
    _torchvision("resnet18", "resnet", classic.resnet18, 11_689_512, "1.8141"),
    _torchvision("resnet34", "resnet", classic.resnet34, 21_797_672, "3.6638"),
    Preset("resnet50", "resnet", classic.resnet50, 25_557_032, 4_089_184_256),
    _torchvision("resnet101", "resnet", classic.resnet101, 44_549_160, "7.8014"),
    _torchvision("resnet152", "resnet", classic.resnet152, 60_192_808, "11.5136"),
    _torchvision("resnext50_32x4d", "resnext", classic.resnext50_32x4d, 25_028_904, "4.2305"),
    Preset("se_resnet50", "se_resnet", classic.se_resnet50, 28_100_000, 4_091_699_200, params_tolerance=50_000,
           note="paper: 28.1M params (ResNet-50 + 2,530,992 of SE); MACs: ResNet-50's + 2,514,944 of SE"),
    Preset("resnetv2_50", "resnetv2", classic.resnetv2_50, 25_549_352, 4_089_184_256,
           note="derived: ResNet-50 with BN moved before the convs (53,120 BN params out, 45,440 in); same MACs"),
    _torchvision("regnet_x_400mf", "regnet", _regnet_factory("regnet_x_400mf"), 5_495_976, "0.4138"),
    _torchvision("regnet_y_400mf", "regnet", _regnet_factory("regnet_y_400mf"), 4_344_144, "0.4018"),
    _torchvision("regnet_y_800mf", "regnet", _regnet_factory("regnet_y_800mf"), 6_432_512, "0.8339"),
    _torchvision("regnet_y_1_6gf", "regnet", _regnet_factory("regnet_y_1_6gf"), 11_202_430, "1.6121"),
    _torchvision("mobilenet_v3_large", "mobilenet", classic.mobilenet_v3_large, 5_483_032, "0.2166"),
    _torchvision("mobilenet_v3_small", "mobilenet", classic.mobilenet_v3_small, 2_542_856, "0.0565"),
    Preset("mobilenet_v1", "mobilenet", classic.mobilenet_v1, 4_200_000, 569_000_000, params_tolerance=42_000,
           macs_tolerance=5_690_000, note="paper: 4.2M params, 569M MACs, within 1% (no torchvision model)"),
    _torchvision("shufflenet_v2_x1_0", "shufflenet", classic.shufflenet_v2_x1_0, 2_278_604, "0.1449"),
    _torchvision("densenet121", "densenet", classic.densenet121, 7_978_856, "2.8342"),
    _torchvision("googlenet", "googlenet", classic.googlenet, 6_624_904, "1.4984"),
    _torchvision("squeezenet1_0", "squeezenet", classic.squeezenet1_0, 1_248_424, "0.8189"),
    _torchvision("squeezenet1_1", "squeezenet", classic.squeezenet1_1, 1_235_496, "0.3492"),
    _torchvision("vgg16", "vgg", classic.vgg16, 138_357_544, "15.4703"),
    _torchvision("alexnet", "alexnet", classic.alexnet, 61_100_840, "0.7142"),
    Preset("lenet5", "lenet", classic.lenet5, 61_706, 416_520,
           note="derived from the layer table at 32x32, 1 channel, 10 classes (paper: ~60k with its sparse C3)"),
    Preset("van_b0", "van", classic.van_b0, 4_100_000, 900_000_000, params_tolerance=82_000,
           macs_tolerance=50_000_000, note="paper: 4.1M params within 2%, 0.9 GFLOPs (MACs) within its rounding"),
)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("efficientnet_b0", "efficientnet", efficientnet_b0, 5_288_548, 385_814_752),
        Preset("efficientnet_b1", "efficientnet", _efficientnet_factory("efficientnet_b1"), 7_794_184, 686_802_832),
        Preset("efficientnet_b2", "efficientnet", _efficientnet_factory("efficientnet_b2"), 9_109_994, 993_561_872),
        Preset("efficientnet_b3", "efficientnet", _efficientnet_factory("efficientnet_b3"), 12_233_232,
               1_827_141_392),
        Preset("efficientnet_b4", "efficientnet", _efficientnet_factory("efficientnet_b4"), 19_341_616,
               4_393_771_024),
        Preset("efficientnet_b5", "efficientnet", _efficientnet_factory("efficientnet_b5"), 30_389_784,
               10_266_384_752),
        Preset("efficientnet_b6", "efficientnet", _efficientnet_factory("efficientnet_b6"), 43_040_704,
               19_067_593_536),
        Preset("efficientnet_b7", "efficientnet", _efficientnet_factory("efficientnet_b7"), 66_347_960,
               37_745_884_192),
        Preset("efficientnetv2_s", "efficientnetv2", efficientnetv2_s, 21_458_488, 8_365_617_152),
        Preset("efficientnetv2_m", "efficientnetv2", efficientnetv2_m, 54_139_356, 24_582_460_384),
        Preset("efficientnetv2_l", "efficientnetv2", efficientnetv2_l, 118_515_272, 56_079_699_008),
        Preset("convnext_tiny", "convnext", convnext_tiny, 28_589_128, 4_455_500_000, macs_tolerance=GMACS_4DP,
               note="MACs published as 4.4555 G"),
        Preset("convnext_small", "convnext", convnext_small, 50_223_688, 8_683_700_000, macs_tolerance=GMACS_4DP,
               note="MACs published as 8.6837 G"),
        Preset("convnext_base", "convnext", convnext_base, 88_591_464, 15_354_700_000, macs_tolerance=GMACS_4DP,
               note="MACs published as 15.3547 G"),
        Preset("convnext_large", "convnext", convnext_large, 197_767_336, 34_361_400_000, macs_tolerance=GMACS_4DP,
               note="MACs published as 34.3614 G"),
        Preset("mnasnet_a1", "mnasnet", mnasnet_a1, 3_900_000, 312_000_000, params_tolerance=39_000,
               macs_tolerance=3_120_000,
               note="paper: 3.9M params, 312M MACs, within 1% (no torchvision model)"),
        Preset("mnasnet_b1", "mnasnet", mnasnet_b1, 4_383_312, 314_400_000, macs_tolerance=GMACS_4DP,
               note="torchvision mnasnet1_0; MACs published as 0.3144 G"),
        Preset("mobilenet_v2", "mobilenet", mobilenet_v2, 3_504_872, 300_800_000, macs_tolerance=GMACS_4DP,
               note="MACs published as 0.3008 G"),
        *CLASSIC_PRESETS,
        *TRANSFORMER_PRESETS,
        *INCEPTION_PRESETS,
    )
}


def get_preset(name: str) -> Preset:
    key = name.strip().lower().replace("-", "_")
    if key not in PRESETS:
        raise UnknownNameError(f"unknown preset {name!r}; run 'nasscale presets' to list them "
                               f"({', '.join(sorted(PRESETS))})")
    return PRESETS[key]


def preset_arch(name: str) -> Arch:
    return get_preset(name).arch()


def resolve_arch(target: str, *, resolution: int | None = None, num_classes: int | None = None,
                 in_channels: int | None = None) -> Arch:
    """A preset name or an architecture file, with optional overrides."""
    from pathlib import Path


    looks_like_file = Path(target).suffix.lower() in (".yaml", ".yml", ".json") or "/" in target
    arch = load_arch_file(target) if looks_like_file else preset_arch(target)
    overrides = {"resolution": resolution, "num_classes": num_classes, "in_channels": in_channels}
    return arch.replace(**{name: value for name, value in overrides.items() if value is not None})


def preset_rows() -> list[dict[str, Any]]:
    """Every preset's analytic cost next to its published reference."""
    rows = []
    for preset in PRESETS.values():
        arch = preset.arch()
        report = cost_report(arch)
        row = {
            "name": preset.name,
            "family": preset.family,
            "resolution": arch.resolution,
            "params": report["params"],
            "macs": report["macs"],
            "reference_params": preset.reference_params,
            "reference_macs": preset.reference_macs,
            "matches_reference": preset.matches(report["params"], report["macs"]),
            "note": preset.note,
            "arch_id": report["arch_id"],
        }
        rows.append(row)
    return rows
