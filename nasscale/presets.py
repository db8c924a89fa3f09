"""Reference architectures in the spec, each with the published numbers it must reproduce.

EfficientNet B1-B7 are derived from B0 by the scaling rules with the released (width, depth,
resolution) coefficients, not typed in: those rules are what ``nasscale scale`` builds on. The classic
families (ResNet to VAN) live in ``nasscale.families.classic_presets``; RegNets come from their six
parameters through RegNet's width rule.

Light core: no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nasscale.arch import Activation, Arch, BlockType, HeadType, Stage, StemType
from nasscale.errors import UnknownNameError
from nasscale.families import classic_presets as classic
from nasscale.scaling import scale_arch

MB, FUSED, SEP, CONVNEXT = BlockType.MBCONV, BlockType.FUSED_MBCONV, BlockType.SEPCONV, BlockType.CONVNEXT


def _stage(block: BlockType, expand: float, kernel: int, stride: int, channels: int, layers: int,
           se: float = 0.0, activation: Activation = Activation.SILU, skip: bool = True) -> Stage:
    return Stage(block=block, num_blocks=layers, out_channels=channels, stride=stride, kernel_size=kernel,
                 expand_ratio=expand, se_ratio=se, activation=activation, skip=skip)


# ------------------------------------------------------------------------------------------ EfficientNet


def efficientnet_b0() -> Arch:
    stages = tuple(
        _stage(MB, expand, kernel, stride, channels, layers, se=0.25)
        for expand, kernel, stride, channels, layers in (
            (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
            (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
        )
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, dropout=0.2,
                drop_path_rate=0.2)


# The released coefficients (width, depth, resolution, dropout), rounded by hand in the paper's code.
EFFICIENTNET_COEFFICIENTS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}


def scaled_efficientnet(name: str) -> Arch:
    width, depth, resolution, dropout = EFFICIENTNET_COEFFICIENTS[name]
    return scale_arch(efficientnet_b0(), width=width, depth=depth, resolution=resolution).replace(dropout=dropout)


def _efficientnetv2(stem: int, rows: tuple[tuple, ...], resolution: int, dropout: float) -> Arch:
    stages = tuple(
        _stage(block, expand, 3, stride, channels, layers, se=0.25 if block is MB else 0.0)
        for block, expand, stride, channels, layers in rows
    )
    return Arch(stages=stages, stem_channels=stem, head_channels=1280, resolution=resolution, dropout=dropout,
                drop_path_rate=0.2)


def efficientnetv2_s() -> Arch:
    return _efficientnetv2(24, (
        (FUSED, 1, 1, 24, 2), (FUSED, 4, 2, 48, 4), (FUSED, 4, 2, 64, 4),
        (MB, 4, 2, 128, 6), (MB, 6, 1, 160, 9), (MB, 6, 2, 256, 15),
    ), resolution=384, dropout=0.2)


def efficientnetv2_m() -> Arch:
    return _efficientnetv2(24, (
        (FUSED, 1, 1, 24, 3), (FUSED, 4, 2, 48, 5), (FUSED, 4, 2, 80, 5),
        (MB, 4, 2, 160, 7), (MB, 6, 1, 176, 14), (MB, 6, 2, 304, 18), (MB, 6, 1, 512, 5),
    ), resolution=480, dropout=0.3)


def efficientnetv2_l() -> Arch:
    return _efficientnetv2(32, (
        (FUSED, 1, 1, 32, 4), (FUSED, 4, 2, 64, 7), (FUSED, 4, 2, 96, 7),
        (MB, 4, 2, 192, 10), (MB, 6, 1, 224, 19), (MB, 6, 2, 384, 25), (MB, 6, 1, 640, 7),
    ), resolution=480, dropout=0.4)


# ---------------------------------------------------------------------------------------------- ConvNeXt


def _convnext(depths: tuple[int, ...], widths: tuple[int, ...], drop_path_rate: float) -> Arch:
    stages = tuple(
        _stage(CONVNEXT, 4, 7, 1 if index == 0 else 2, width, depth, activation=Activation.GELU)
        for index, (depth, width) in enumerate(zip(depths, widths, strict=True))
    )
    return Arch(stages=stages, stem=StemType.PATCHIFY, stem_channels=widths[0], head=HeadType.NORM,
                head_channels=0, resolution=224, dropout=0.0, drop_path_rate=drop_path_rate,
                activation=Activation.GELU)


def convnext_tiny() -> Arch:
    return _convnext((3, 3, 9, 3), (96, 192, 384, 768), 0.1)


def convnext_small() -> Arch:
    return _convnext((3, 3, 27, 3), (96, 192, 384, 768), 0.4)


def convnext_base() -> Arch:
    return _convnext((3, 3, 27, 3), (128, 256, 512, 1024), 0.5)


def convnext_large() -> Arch:
    return _convnext((3, 3, 27, 3), (192, 384, 768, 1536), 0.5)


# ------------------------------------------------------------------------------------ MnasNet, MobileNet


def mnasnet_a1() -> Arch:
    relu = Activation.RELU
    stages = (
        _stage(SEP, 1, 3, 1, 16, 1, activation=relu, skip=False),
        _stage(MB, 6, 3, 2, 24, 2, activation=relu),
        _stage(MB, 3, 5, 2, 40, 3, se=0.25, activation=relu),
        _stage(MB, 6, 3, 2, 80, 4, activation=relu),
        _stage(MB, 6, 3, 1, 112, 2, se=0.25, activation=relu),
        _stage(MB, 6, 5, 2, 160, 3, se=0.25, activation=relu),
        _stage(MB, 6, 3, 1, 320, 1, activation=relu),
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, activation=relu, dropout=0.2)


def mnasnet_b1() -> Arch:
    """torchvision's ``mnasnet1_0``: MnasNet-B1, without squeeze-excite."""
    relu = Activation.RELU
    stages = (
        _stage(SEP, 1, 3, 1, 16, 1, activation=relu, skip=False),
        _stage(MB, 3, 3, 2, 24, 3, activation=relu),
        _stage(MB, 3, 5, 2, 40, 3, activation=relu),
        _stage(MB, 6, 5, 2, 80, 3, activation=relu),
        _stage(MB, 6, 3, 1, 96, 2, activation=relu),
        _stage(MB, 6, 5, 2, 192, 4, activation=relu),
        _stage(MB, 6, 3, 1, 320, 1, activation=relu),
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, activation=relu, dropout=0.2)


def mobilenet_v2() -> Arch:
    relu6 = Activation.RELU6
    stages = tuple(
        _stage(MB, expand, 3, stride, channels, layers, activation=relu6)
        for expand, channels, layers, stride in (
            (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
        )
    )
    return Arch(stages=stages, stem_channels=32, head_channels=1280, resolution=224, activation=relu6, dropout=0.2)


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


# Half a unit of the 4th decimal of a GMACs figure (torchvision publishes "4.4555").
GMACS_4DP = 50_000


def _efficientnet_factory(name: str) -> Callable[[], Arch]:
    return lambda: scaled_efficientnet(name)


def _regnet_factory(name: str) -> Callable[[], Arch]:
    return lambda: classic.regnet(name)


def _torchvision(name: str, family: str, factory: Callable[[], Arch], params: int, gmacs: str) -> Preset:
    """A preset checked against torchvision's parameter count and its 4-decimal GMACs."""
    return Preset(name, family, factory, params, round(float(gmacs) * 1e9), macs_tolerance=GMACS_4DP,
                  note=f"MACs published as {gmacs} G")


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

    from nasscale.arch import load_arch_file

    looks_like_file = Path(target).suffix.lower() in (".yaml", ".yml", ".json") or "/" in target
    arch = load_arch_file(target) if looks_like_file else preset_arch(target)
    overrides = {"resolution": resolution, "num_classes": num_classes, "in_channels": in_channels}
    return arch.replace(**{name: value for name, value in overrides.items() if value is not None})


def preset_rows(*, check: bool = False) -> list[dict]:
    """Every preset's analytic cost next to its published reference (and the oracles with ``check``)."""
    from nasscale.cost import cost_report

    rows = []
    for preset in PRESETS.values():
        arch = preset.arch()
        report = cost_report(arch, check=check)
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
        if check:
            row |= {key: report[key] for key in ("params_built", "macs_fvcore", "macs_torch", "counts_agree")}
        rows.append(row)
    return rows
