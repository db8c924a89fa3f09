"""EfficientNetV2-style non-uniform scaling: for a MAC target, every depth profile (which stages deepen, and
how steeply) times a width grid under a resolution cap, the lightest feasible allocation first
(``solve_stage_allocation``), and the comparison with the released EfficientNetV2-M and -L.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasscale.errors import ScalingError, SpecError
from nasscale.presets.efficientnet import efficientnetv2_s
from nasscale.presets.registry import preset_arch
from nasscale.scale.checks import check_target, check_tolerance
from nasscale.scale.ladder import within
from nasscale.scale.solver import (
    BUDGET_TOLERANCE,
    DEFAULT_ALLOCATION_WIDTHS,
    DEFAULT_RAMP_STRENGTHS,
    RowTable,
    ScaledCostModel,
    as_plain_dict,
    candidate_score,
    closest_resolution,
    lightest_first,
)
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.rescaling import (
    V2_MAX_RESOLUTION,
    check_multiplier,
    check_resolution,
    check_stage_depths,
    scale_arch_nonuniform,
    scaled_layers,
)
from nasscale.units import format_count

# ---------------------------------------------------------------------------------------------------------------
# Non-uniform stage scaling (EfficientNetV2)

PROFILE_KINDS = ("ramp", "uniform")


def depth_profile(num_stages: int, kind: str = "ramp", strength: float = 1.0) -> tuple[float, ...]:
    """Per-stage depth multipliers. "ramp" grows linearly from 1 at the first stage to 1 + strength at the last,
    so later stages gain the most layers (EfficientNetV2); "uniform" is 1 + strength everywhere."""
    if isinstance(num_stages, bool) or not isinstance(num_stages, int) or num_stages < 1:
        raise SpecError("num_stages", f"must be a positive integer, got {num_stages!r}")
    if kind not in PROFILE_KINDS:
        raise SpecError("kind", f"must be one of {', '.join(PROFILE_KINDS)}, got {kind!r}")
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength < math.inf:
        raise SpecError("strength", f"must be a non-negative number, got {strength!r}")
    if kind == "uniform" or num_stages == 1:
        return (1.0 + strength,) * num_stages
    return tuple(1.0 + strength * index / (num_stages - 1) for index in range(num_stages))


def default_profiles(num_stages: int) -> dict[str, tuple[float, ...]]:
    return {f"ramp {strength:g}": depth_profile(num_stages, "ramp", strength) for strength in DEFAULT_RAMP_STRENGTHS}


@dataclass(frozen=True, slots=True)
class AllocationCandidate:
    profile: str
    stage_depths: tuple[float, ...]
    width: float
    resolution: int
    stage_channels: tuple[int, ...]
    stage_layers: tuple[int, ...]
    params: int
    macs: int
    target_macs: int
    deviation: float  # (macs - target_macs) / target_macs
    feasible: bool
    accuracy: float | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return as_plain_dict(self)


@dataclass(frozen=True, slots=True)
class AllocationResult(RowTable[AllocationCandidate]):
    base: Arch
    target_macs: int
    max_resolution: int
    tolerance: float
    rows: tuple[AllocationCandidate, ...]
    best: AllocationCandidate
    seconds: float

    rank_key = staticmethod(lightest_first)

    def best_arch(self) -> Arch:
        return scale_arch_nonuniform(self.base, self.best.width, self.best.stage_depths, self.best.resolution,
                                     self.max_resolution)


def solve_stage_allocation(base: Arch, target_macs: int, *, max_resolution: int = V2_MAX_RESOLUTION,
                           min_resolution: int | None = None,
                           profiles: Mapping[str, Sequence[float]] | Sequence[Sequence[float]] | None = None,
                           widths: Sequence[float] = DEFAULT_ALLOCATION_WIDTHS, tolerance: float = BUDGET_TOLERANCE,
                           evaluate: Callable[[Arch], float] | None = None,
                           on_candidate: Callable[[AllocationCandidate], None] | None = None) -> AllocationResult:
    """EfficientNetV2-style scaling to a MAC budget: every depth profile (default: ramps of strength 0..3) x every
    width multiplier, each at the resolution in [min_resolution (default the base's), max_resolution] whose MACs
    are closest to the target, feasible within ``tolerance``. With ``evaluate`` the best score wins; without it the
    fewest params, then the closest to the target: inside the band closeness is noise from resolution steps (it
    picked the heaviest candidate for V2-M), while fewer params at equal MACs means a lighter model. Raises
    ScalingError when nothing is feasible."""
    check_target(target_macs)
    check_tolerance(tolerance)
    check_resolution("max_resolution", max_resolution)
    low = base.resolution if min_resolution is None else min_resolution
    check_resolution("min_resolution", low)
    if low > max_resolution:
        raise SpecError("min_resolution", f"{low} exceeds max_resolution {max_resolution}")
    named = _named_profiles(base, profiles)
    for width in widths:
        check_multiplier("width", width)
    started = time.perf_counter()
    model = ScaledCostModel(base)
    rows = []
    for name, depths in named.items():
        layers = scaled_layers(base, depths)
        for width in widths:
            row = _allocation_candidate(model, name, depths, layers, width, target_macs, low, max_resolution,
                                        tolerance, evaluate)
            rows.append(row)
            if on_candidate is not None:
                on_candidate(row)
    ranked = sorted((row for row in rows if row.feasible), key=lightest_first)
    if not ranked:
        closest = min(rows, key=lambda row: abs(row.deviation))
        raise ScalingError(
            f"no profile x width reaches {format_count(target_macs)} MACs within {tolerance:.0%} at resolution "
            f"{low}..{max_resolution}; closest is {format_count(closest.macs)} ({closest.deviation:+.1%}, "
            f"{closest.profile}, width {closest.width:g}, resolution {closest.resolution})"
        )
    return AllocationResult(base, target_macs, max_resolution, tolerance, tuple(rows), ranked[0],
                            time.perf_counter() - started)


def _allocation_candidate(model: ScaledCostModel, name: str, depths: tuple[float, ...], layers: tuple[int, ...],
                          width: float, target: int, low: int, high: int, tolerance: float,
                          evaluate: Callable[[Arch], float] | None) -> AllocationCandidate:
    started = time.perf_counter()
    resolution, _ = closest_resolution(model, width, layers, target, low=low, high=high, multiple=1)
    total = model.cost(width, layers, resolution)
    feasible = within(total.macs, target, tolerance)
    accuracy = candidate_score(evaluate, model.arch(width, layers, resolution)) if feasible and evaluate else None
    return AllocationCandidate(name, depths, width, resolution, model.channels(width)[1], layers, total.params,
                               total.macs, target, total.macs / target - 1, feasible, accuracy,
                               time.perf_counter() - started)


def _named_profiles(base: Arch, profiles: Mapping[str, Sequence[float]] | Sequence[Sequence[float]] | None,
                    ) -> dict[str, tuple[float, ...]]:
    if profiles is None:
        return default_profiles(len(base.stages))
    if not isinstance(profiles, Mapping):
        profiles = {",".join(f"{depth:g}" for depth in depths): depths for depths in profiles}
    if not profiles:
        raise SpecError("profiles", "must name at least one per-stage depth profile")
    return {name: check_stage_depths(base, depths, f"profiles[{name!r}]") for name, depths in profiles.items()}


def efficientnetv2_comparison(**allocation_options: Any) -> list[dict[str, Any]]:
    """EfficientNetV2-S scaled by ``solve_stage_allocation`` to the V2-M and V2-L MAC budgets, next to the
    published V2-M and V2-L (costed from the presets, which match the published counts)."""
    base = efficientnetv2_s()
    rows = []
    for name in ("efficientnetv2_m", "efficientnetv2_l"):
        published = preset_arch(name)
        reference = cost(published)
        result = solve_stage_allocation(base, reference.macs, **allocation_options)
        ours = result.best
        rows.append({
            "name": name, "target_macs": reference.macs,
            "ours_profile": ours.profile, "ours_width": ours.width, "ours_resolution": ours.resolution,
            "ours_stage_layers": ours.stage_layers, "ours_stage_channels": ours.stage_channels,
            "ours_params": ours.params, "ours_macs": ours.macs, "ours_deviation": ours.deviation,
            "published_resolution": published.resolution,
            "published_stage_layers": tuple(stage.num_blocks for stage in published.stages),
            "published_stage_channels": tuple(stage.out_channels for stage in published.stages),
            "published_params": reference.params, "published_macs": reference.macs,
            "params_ratio": ours.params / reference.params, "feasible_candidates": len(result.feasible()),
            "seconds": result.seconds,
        })
    return rows
