"""Compound scaling: EfficientNet B1-B7 from B0, the coefficient solver, budget-exact ladders and
EfficientNetV2-style non-uniform stage scaling. Analytic only (no torch); fast."""

import math
import random
import subprocess
import sys

import pytest

from nasscale.errors import ScalingError, SpecError
from nasscale.presets.convnext import convnext_tiny
from nasscale.presets.efficientnet import efficientnet_b0, efficientnetv2_s, scaled_efficientnet
from nasscale.presets.registry import preset_arch
from nasscale.scale.allocation import depth_profile, efficientnetv2_comparison, solve_stage_allocation
from nasscale.scale.ladder import efficientnet_ladder_comparison, efficientnet_released_ladder, scale_ladder
from nasscale.scale.solver import EFFICIENTNET_COMPOUND, ScaledCostModel, solve_coefficients
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.random_arch import random_arch
from nasscale.spec.rescaling import round_resolution, scale_arch, scale_arch_nonuniform, scaled_channels
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import BlockType

# Published EfficientNet figures: released (width, depth, resolution), exact params and MACs (1000 classes).
RELEASED = {
    1: (1.0, 1.1, 240, 7_794_184, 686_802_832),
    2: (1.1, 1.2, 260, 9_109_994, 993_561_872),
    3: (1.2, 1.4, 300, 12_233_232, 1_827_141_392),
    4: (1.4, 1.8, 380, 19_341_616, 4_393_771_024),
    5: (1.6, 2.2, 456, 30_389_784, 10_266_384_752),
    6: (1.8, 2.6, 528, 43_040_704, 19_067_593_536),
    7: (2.0, 3.1, 600, 66_347_960, 37_745_884_192),
}
B0_MACS = 385_814_752
# The released ladder against B0 x 2^phi, as published (whole percent).
RELEASED_DEVIATION_PERCENT = {1: -11, 2: -36, 3: -41, 4: -29, 5: -17, 6: -23, 7: -24}
# Rounded stages: stem | (out, layers) per stage | head.
ROUNDED_STAGES = {
    3: (40, ((24, 2), (32, 3), (48, 3), (96, 5), (136, 5), (232, 6), (384, 2)), 1536),
    7: (64, ((32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)), 2560),
}
V2_PUBLISHED = {"efficientnetv2_m": (54_139_356, 24_582_460_384), "efficientnetv2_l": (118_515_272, 56_079_699_008)}
PHIS = range(1, 8)


def custom_searched_arch() -> Arch:
    """A small MnasNet-like MBConv/sepconv network standing in for one a search returned."""
    mb, sep = BlockType.MBCONV, BlockType.SEPCONV
    return Arch(
        stages=(
            Stage(block=sep, num_blocks=1, out_channels=16, stride=1, se_ratio=0.25),
            Stage(block=mb, num_blocks=2, out_channels=24, stride=2, expand_ratio=3),
            Stage(block=mb, num_blocks=3, out_channels=40, stride=2, kernel_size=5, expand_ratio=3, se_ratio=0.25),
            Stage(block=mb, num_blocks=2, out_channels=80, stride=2, expand_ratio=6),
            Stage(block=mb, num_blocks=2, out_channels=112, stride=1, kernel_size=5, expand_ratio=6, se_ratio=0.25),
            Stage(block=mb, num_blocks=3, out_channels=192, stride=2, kernel_size=5, expand_ratio=6, se_ratio=0.25),
        ),
        stem_channels=32,
        head_channels=1280,
        resolution=224,
    )


LADDER_BASES = {
    "efficientnet_b0": efficientnet_b0,
    "convnext_tiny": convnext_tiny,
    "custom_mbconv_sepconv": custom_searched_arch,
}


@pytest.fixture(scope="module")
def b0() -> Arch:
    return efficientnet_b0()


@pytest.fixture(scope="module")
def b0_grid(b0):
    return solve_coefficients(b0)


def assert_one_line(error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert message and "\n" not in message


# ------------------------------------------------------------------------------------------------ primitives


@pytest.mark.parametrize("phi", sorted(RELEASED))
def test_released_efficientnets_reproduced_from_b0(b0, phi):
    width, depth, resolution, params, macs = RELEASED[phi]
    total = cost(scale_arch(b0, width=width, depth=depth, resolution=resolution))
    assert (total.params, total.macs) == (params, macs)


@pytest.mark.parametrize("phi", sorted(ROUNDED_STAGES))
def test_rounded_stages_match_published(b0, phi):
    width, depth, resolution, *_ = RELEASED[phi]
    arch = scale_arch(b0, width=width, depth=depth, resolution=resolution)
    stem, stages, head = ROUNDED_STAGES[phi]
    assert arch.stem_channels == stem and arch.head_channels == head
    assert tuple((stage.out_channels, stage.num_blocks) for stage in arch.stages) == stages


def test_presets_still_derive_from_the_rules():
    for phi in RELEASED:
        assert scaled_efficientnet(f"efficientnet_b{phi}") == preset_arch(f"efficientnet_b{phi}")


def test_round_resolution_multiple():
    assert round_resolution(257.6) == 258
    assert round_resolution(257.6, 8) == 256
    assert round_resolution(3, 32) == 32


def test_convnext_stem_follows_stage0_and_norm_head_stays_zero():
    arch = scale_arch(convnext_tiny(), width=1.37, depth=1.3, resolution=256)
    assert arch.stem_channels == arch.stages[0].out_channels
    assert arch.head_channels == 0


def test_cost_model_is_exact_on_random_archs():
    rng = random.Random(7)
    for _ in range(60):
        base = random_arch(rng)
        model = ScaledCostModel(base)
        width = rng.choice([0.5, 1.0, 1.3, 2.1])
        layers = [rng.randint(1, 5) for _ in base.stages]
        resolution = base.resolution + rng.choice([0, 3, 16, 41])
        rebuilt = model.arch(width, layers, resolution)
        assert model.cost(width, layers, resolution) == cost(rebuilt)
        assert (rebuilt.stem_channels, tuple(s.out_channels for s in rebuilt.stages), rebuilt.head_channels) == (
            scaled_channels(base, width))


# ------------------------------------------------------------------------------------------------ solver


def test_solver_grid_is_whole_and_exact(b0, b0_grid):
    assert len(b0_grid.rows) == 21**3
    assert b0_grid.base_macs == B0_MACS
    for row in random.Random(1).sample(b0_grid.rows, 25):
        total = cost(scale_arch(b0, width=row.beta, depth=row.alpha, resolution=row.resolution))
        assert (row.params, row.macs) == (total.params, total.macs)
        assert row.resolution == round(224 * row.gamma)
        assert row.mac_ratio == row.macs / B0_MACS
    for row in b0_grid.rows:
        assert row.feasible == (abs(row.mac_ratio / 2 - 1) <= 0.05)
        assert row.accuracy is None


def test_paper_coefficients_feasible_by_ideal_product_not_by_rounded_macs(b0, b0_grid):
    """(1.2, 1.1, 1.15) has alpha * beta^2 * gamma^2 = 1.9203, 4% under 2: feasible when the 5% tolerance applies
    to the ideal product. Rounded (layers round up: 16 -> 23 blocks) it costs 2.57x B0, 29% over: infeasible at
    5% by actual MACs, admitted only from a 29% tolerance."""
    paper = b0_grid.find(*EFFICIENTNET_COMPOUND)
    assert paper.ideal_product == pytest.approx(1.92027)
    assert paper.resolution == 258
    assert paper.mac_ratio == pytest.approx(2.5728, abs=1e-4)
    assert not paper.feasible
    assert solve_coefficients(b0, criterion="ideal", tolerance=0.05).find(*EFFICIENTNET_COMPOUND).feasible
    assert solve_coefficients(b0, tolerance=0.29).find(*EFFICIENTNET_COMPOUND).feasible
    assert not solve_coefficients(b0, tolerance=0.28).find(*EFFICIENTNET_COMPOUND).feasible


def test_solver_without_evaluate_ranks_by_closeness(b0_grid):
    ranked = b0_grid.ranked()
    assert ranked[0] == b0_grid.best
    assert [abs(row.deviation) for row in ranked] == sorted(abs(row.deviation) for row in ranked)
    table = b0_grid.table()
    assert len(table) == len(b0_grid.rows)
    assert {"alpha", "beta", "gamma", "ideal_product", "resolution", "stage_channels", "stage_layers", "params",
            "macs", "mac_ratio", "feasible", "accuracy", "seconds"} <= set(table.columns)
    assert int(table["feasible"].sum()) == len(b0_grid.feasible())


def test_solver_evaluate_scores_feasible_only_and_best_wins(b0):
    scored, seen = [], []

    def proxy_accuracy(arch: Arch) -> float:
        scored.append(arch)
        return arch.resolution + 0.001 * sum(stage.num_blocks for stage in arch.stages)

    result = solve_coefficients(b0, step=0.25, tolerance=0.1, evaluate=proxy_accuracy, on_candidate=seen.append)
    assert len(seen) == len(result.rows) == 5**3
    assert len(scored) == len(result.feasible()) > 1
    assert all((row.accuracy is not None) == row.feasible for row in result.rows)
    assert result.best.accuracy == max(row.accuracy for row in result.feasible())
    assert result.best_arch().resolution == result.best.resolution


def test_scaling_is_light_core():
    code = ("import sys, nasscale.scale.solver, nasscale.scale.ladder, nasscale.scale.allocation; "
            "print(sorted({'torch', 'pandas'} & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# ------------------------------------------------------------------------------------------------ ladders


@pytest.mark.parametrize("name", sorted(LADDER_BASES))
def test_budget_exact_ladder_within_two_percent(name):
    base = LADDER_BASES[name]()
    base_macs = cost(base).macs
    steps = scale_ladder(base, PHIS)
    assert [step.phi for step in steps] == list(PHIS)
    for step in steps:
        assert step.target_macs == base_macs * 2**step.phi
        assert abs(step.deviation) <= 0.02
        total = cost(step.arch)
        assert (step.params, step.macs) == (total.params, total.macs)
        assert step.stage_layers == tuple(stage.num_blocks for stage in step.arch.stages)
        assert step.arch.resolution == step.resolution
        assert step.as_dict()["arch_id"] == step.arch.arch_id


def test_raw_ladder_is_the_pure_compound_rule(b0):
    alpha, beta, gamma = 1.2, 1.1, 1.15
    for step in scale_ladder(b0, PHIS, coefficients=(alpha, beta, gamma), budget_exact=False):
        expected = scale_arch(b0, width=beta**step.phi, depth=alpha**step.phi, resolution=round(224 * gamma**step.phi))
        assert step.arch == expected
        assert step.method == "compound"
        assert step.deviation == cost(expected).macs / (B0_MACS * 2**step.phi) - 1


def test_explicit_target_and_resolution_multiple(b0):
    (step,) = scale_ladder(b0, [2], target_macs=1_000_000_000, resolution_multiple=8)
    assert step.target_macs == 1_000_000_000
    assert abs(step.deviation) <= 0.02
    assert step.resolution % 8 == 0


def test_released_ladder_is_computed_from_presets():
    released = efficientnet_released_ladder()
    assert [step.phi for step in released] == list(PHIS)
    for step in released:
        assert step.macs == RELEASED[step.phi][4] and step.params == RELEASED[step.phi][3]
        assert step.target_macs == B0_MACS * 2**step.phi
        assert round(100 * step.deviation) == RELEASED_DEVIATION_PERCENT[step.phi]


def test_ladder_comparison_side_by_side():
    rows = efficientnet_ladder_comparison()
    assert [row["phi"] for row in rows] == list(PHIS)
    for row in rows:
        assert abs(row["ours_deviation"]) <= 0.02
        assert round(100 * row["released_deviation"]) == RELEASED_DEVIATION_PERCENT[row["phi"]]


# ------------------------------------------------------------------------------------------------ non-uniform


def test_depth_profiles():
    ramp = depth_profile(6, "ramp", 1.5)
    assert ramp[0] == 1.0 and ramp[-1] == 2.5
    assert list(ramp) == sorted(ramp)
    assert depth_profile(4, "uniform", 0.5) == (1.5,) * 4


def test_nonuniform_scaling_adds_layers_later_and_honours_the_cap():
    base = efficientnetv2_s()
    arch = scale_arch_nonuniform(base, 1.0, depth_profile(6, "ramp", 1.0), 480)
    assert [stage.num_blocks for stage in arch.stages] == [math.ceil(stage.num_blocks * (1 + index / 5))
                                                          for index, stage in enumerate(base.stages)]
    with pytest.raises(SpecError, match="exceeds max_resolution 480") as error:
        scale_arch_nonuniform(base, 1.0, depth_profile(6), 481)
    assert_one_line(error)


def test_stage_allocation_honours_cap_and_budget():
    base = efficientnetv2_s()
    target = V2_PUBLISHED["efficientnetv2_m"][1]
    result = solve_stage_allocation(base, target)
    assert all(row.resolution <= 480 for row in result.rows)
    assert all(abs(row.deviation) <= 0.02 for row in result.feasible())
    assert result.best == min(result.feasible(), key=lambda row: (row.params, abs(row.deviation)))
    best = result.best_arch()
    assert best.resolution <= 480 and cost(best).macs == result.best.macs
    # A budget that plain compound scaling would meet with a larger image must still stay at 480.
    tight = solve_stage_allocation(base, 2 * target, widths=(1.0, 1.2, 1.4, 1.6))
    assert max(row.resolution for row in tight.rows) <= 480


def test_stage_allocation_with_evaluate():
    base = efficientnetv2_s()

    def prefers_deep_late_stages(arch: Arch) -> float:
        return arch.stages[-1].num_blocks - 0.01 * arch.stages[0].out_channels

    result = solve_stage_allocation(base, 20_000_000_000, evaluate=prefers_deep_late_stages,
                                    profiles={"flat": (1,) * 6, "late": depth_profile(6, "ramp", 2.0)})
    assert result.best.profile == "late"
    assert result.best.accuracy == max(row.accuracy for row in result.feasible())


def test_efficientnetv2_comparison_rows():
    rows = efficientnetv2_comparison()
    assert [row["name"] for row in rows] == list(V2_PUBLISHED)
    for row in rows:
        assert (row["published_params"], row["published_macs"]) == V2_PUBLISHED[row["name"]]
        assert row["target_macs"] == row["published_macs"]
        assert row["ours_resolution"] <= 480
        assert abs(row["ours_deviation"]) <= 0.02


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("call", "error_type", "match"),
    [
        (lambda base: scale_ladder(base, [11]), SpecError, r"phi: must be an integer in 0\.\.10, got 11"),
        (lambda base: scale_ladder(base, [-1]), SpecError, "phi: must be an integer"),
        (lambda base: scale_ladder(base, [1.5]), SpecError, "phi: must be an integer"),
        (lambda base: scale_ladder(base, []), SpecError, "phis: must name at least one"),
        (lambda base: scale_ladder(base, [1], coefficients=(1.2, 0.9, 1.15)), SpecError, "beta: must be at least 1"),
        (lambda base: scale_ladder(base, [1, 2], target_macs=10**9), SpecError, "single phi"),
        (lambda base: scale_ladder(base, [1], target_macs=1_000), ScalingError, "below what this architecture"),
        (lambda base: scale_ladder(base, [7], max_resolution=256), ScalingError, "above what this architecture"),
        (lambda base: solve_coefficients(base, target_ratio=50.0), ScalingError, "no \\(alpha, beta, gamma\\)"),
        (lambda base: solve_coefficients(base, criterion="flops"), SpecError, "criterion: must be one of"),
        (lambda base: solve_coefficients(base, step=0), SpecError, "step: must be a positive number"),
        (lambda base: solve_stage_allocation(base, 10**13), ScalingError, "no profile x width reaches"),
        (lambda base: scale_arch_nonuniform(base, 1.0, (1.0, 2.0), 224), SpecError, "one multiplier per stage"),
        (lambda base: depth_profile(7, "exponential"), SpecError, "kind: must be one of ramp, uniform"),
        (lambda base: solve_coefficients(base, step=0.5, tolerance=0.5, evaluate=lambda arch: math.nan), ScalingError,
         "finite accuracy"),
    ],
)
def test_errors_are_one_line(b0, call, error_type, match):
    with pytest.raises(error_type, match=match) as error:
        call(b0)
    assert_one_line(error)


@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_x_400mf", "resnext50_32x4d"])
def test_grouped_bottlenecks_widen_by_adding_groups_of_the_same_width(name):
    # RegNet and ResNeXt fix the channels per group: a wider stage gets more groups, not wider ones.
    base = preset_arch(name)
    steps = scale_ladder(base, (1, 2, 3))
    for step in steps:
        assert abs(step.deviation) <= 0.02
        for original, scaled in zip(base.stages, step.arch.stages, strict=True):
            width = scaled.out_channels * scaled.bottleneck_ratio
            assert width / scaled.groups == original.out_channels * original.bottleneck_ratio / original.groups
            assert scaled.out_channels >= original.out_channels and scaled.out_channels % 8 == 0
