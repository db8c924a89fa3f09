"""Ladders of compound-scaled models and EfficientNet's released B1-B7 beside them.

Budget-exact ladders: step phi aims at base MACs x 2^phi. The compound rule (depth alpha^phi, width beta^phi,
resolution gamma^phi) drifts from that target once layers and channels are rounded, so we keep depth and width
and re-solve the resolution: MACs never decrease as the resolution grows, so a bisection over resolutions
(multiples of ``resolution_multiple``) finds the one closest to the target. Where one resolution step is coarser
than the 2% band, the width multiplier is nudged outward from beta^phi in 1% steps, re-solving the resolution
for each, and the first width that lands within 2% is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from nasscale.errors import ScalingError, SpecError
from nasscale.presets.efficientnet import EFFICIENTNET_COEFFICIENTS, efficientnet_b0, scaled_efficientnet
from nasscale.scale.checks import check_coefficients, check_phis, check_positive, check_target, check_tolerance
from nasscale.scale.solver import (
    BUDGET_TOLERANCE,
    EFFICIENTNET_COMPOUND,
    MIN_SEARCH_RESOLUTION,
    WIDTH_NUDGE_RANGE,
    WIDTH_NUDGE_STEP,
    ScaledCostModel,
    as_plain_dict,
    closest_resolution,
)
from nasscale.spec.arch import Arch, to_dict
from nasscale.spec.cost import cost
from nasscale.spec.rescaling import Channels, check_resolution, round_resolution, scaled_layers
from nasscale.spec.serialization import summary as arch_summary
from nasscale.units import format_count

# ---------------------------------------------------------------------------------------------------------------
# Ladders


@dataclass(frozen=True, slots=True)
class LadderStep:
    phi: int
    coefficients: tuple[float, float, float]  # (alpha, beta, gamma)
    resolution: int
    width: float  # width multiplier applied: beta^phi, or nudged from it in budget-exact mode
    depth: float  # depth multiplier applied: alpha^phi
    stage_channels: tuple[int, ...]
    stage_layers: tuple[int, ...]
    params: int
    macs: int
    target_macs: int
    deviation: float  # (macs - target_macs) / target_macs
    method: str  # "compound": raw rule; "resolution": resolution re-solved; "resolution+width": width nudged too
    arch: Arch

    def as_dict(self, *, include_arch: bool = False) -> dict[str, Any]:
        data = {name: value for name, value in as_plain_dict(self).items() if name != "arch"}
        data |= {"arch_id": self.arch.arch_id, "summary": arch_summary(self.arch)}
        if include_arch:
            data["arch"] = to_dict(self.arch)
        return data


@dataclass(frozen=True, slots=True)
class _LadderSpec:
    model: ScaledCostModel
    coefficients: tuple[float, float, float]
    budget_exact: bool
    resolution_multiple: int
    floor: int
    max_resolution: int | None
    tolerance: float
    width_step: float
    width_range: float


def scale_ladder(base: Arch, phis: Sequence[int], *, coefficients: Sequence[float] | None = None,
                 target_macs: int | None = None, budget_exact: bool = True, resolution_multiple: int = 1,
                 max_resolution: int | None = None, tolerance: float = BUDGET_TOLERANCE,
                 width_step: float = WIDTH_NUDGE_STEP, width_range: float = WIDTH_NUDGE_RANGE) -> list[LadderStep]:
    """One scaled model per phi in 0..10, aiming at base MACs x 2^phi (or ``target_macs`` for a single phi).

    ``coefficients`` (alpha, beta, gamma), each at least 1, default to EfficientNet's (1.2, 1.1, 1.15), e.g.
    ``solve_coefficients(base).best.coefficients`` for a searched base. ``budget_exact=False`` returns the raw
    compound rule; otherwise each step is corrected to within ``tolerance`` (see the module docstring) or raises
    ScalingError. ``max_resolution`` caps every step's resolution."""
    steps = check_phis(phis)
    coefficients = check_coefficients(EFFICIENTNET_COMPOUND if coefficients is None else coefficients)
    check_resolution("resolution_multiple", resolution_multiple)
    check_tolerance(tolerance)
    check_positive("width_step", width_step)
    check_positive("width_range", width_range)
    floor = _search_floor(base, resolution_multiple)
    if max_resolution is not None:
        check_resolution("max_resolution", max_resolution)
        if max_resolution < floor:
            raise SpecError("max_resolution", f"must be at least {floor}, got {max_resolution}")
    base_macs = cost(base).macs
    if target_macs is not None:
        check_target(target_macs)
        if len(steps) != 1:
            raise SpecError("target_macs", f"applies to a single phi, got {len(steps)} phis")
    spec = _LadderSpec(ScaledCostModel(base), coefficients, budget_exact, resolution_multiple, floor, max_resolution,
                       tolerance, width_step, width_range)
    return [_ladder_step(spec, phi, target_macs or base_macs * 2**phi) for phi in steps]


def _ladder_step(spec: _LadderSpec, phi: int, target: int) -> LadderStep:
    alpha, beta, gamma = spec.coefficients
    base = spec.model.base
    depth, width = alpha**phi, beta**phi
    layers = scaled_layers(base, [depth] * len(base.stages))
    resolution = round_resolution(base.resolution * gamma**phi, spec.resolution_multiple)
    if spec.max_resolution is not None:
        resolution = min(resolution, spec.max_resolution // spec.resolution_multiple * spec.resolution_multiple)
    method = "compound"
    if spec.budget_exact and not within(spec.model.cost(width, layers, resolution).macs, target, spec.tolerance):
        width, resolution, method = _budget_exact(spec, phi, width, layers, target)
    arch = spec.model.arch(width, layers, resolution)
    total = cost(arch)  # from the rebuilt arch itself, not the cache
    return LadderStep(phi, spec.coefficients, resolution, width, depth, tuple(s.out_channels for s in arch.stages),
                      layers, total.params, total.macs, target, total.macs / target - 1, method, arch)


def _budget_exact(spec: _LadderSpec, phi: int, width: float, layers: tuple[int, ...],
                  target: int) -> tuple[float, int, str]:
    """Re-solve the resolution at the compound width; failing that, nudge the width (nearest first)."""
    closest: tuple[float, float, int, int] | None = None  # (|deviation|, width, resolution, macs)
    seen: set[Channels] = set()
    for candidate in _nudged_widths(width, spec.width_step, spec.width_range):
        channels = spec.model.channels(candidate)
        if channels in seen:
            continue
        seen.add(channels)
        resolution, macs = closest_resolution(spec.model, candidate, layers, target, low=spec.floor,
                                               high=spec.max_resolution, multiple=spec.resolution_multiple)
        if within(macs, target, spec.tolerance):
            return candidate, resolution, "resolution" if candidate == width else "resolution+width"
        if closest is None or abs(macs / target - 1) < closest[0]:
            closest = (abs(macs / target - 1), candidate, resolution, macs)
    assert closest is not None  # the first candidate, the compound width itself, is always tried
    _, nearest_width, nearest_resolution, nearest_macs = closest
    side = ("the target is below what this architecture reaches" if nearest_macs > target
            else "the target is above what this architecture reaches under the resolution limit")
    raise ScalingError(
        f"phi={phi}: no width/resolution lands within {spec.tolerance:.0%} of {format_count(target)} MACs; "
        f"closest is {format_count(nearest_macs)} ({_deviation_text(nearest_macs, target)}) at width "
        f"{nearest_width:.3f}, resolution {nearest_resolution} ({side})"
    )


def _deviation_text(macs: int, target: int) -> str:
    ratio = macs / target
    return f"{ratio - 1:+.1%}" if ratio < 10 else f"{ratio:,.0f}x the target"


def _nudged_widths(width: float, step: float, span: float) -> Iterator[float]:
    yield width
    for index in range(1, int(round(span / step)) + 1):
        yield width * (1 + index * step)
        if index * step < 1:
            yield width * (1 - index * step)


def within(macs: int, target: int, tolerance: float) -> bool:
    return abs(macs / target - 1) <= tolerance


def _search_floor(base: Arch, multiple: int) -> int:
    floor = min(MIN_SEARCH_RESOLUTION, base.resolution)
    return -(-floor // multiple) * multiple


@dataclass(frozen=True, slots=True)
class ReleasedStep:
    phi: int
    name: str
    width: float
    depth: float
    resolution: int
    params: int
    macs: int
    target_macs: int  # B0 MACs x 2^phi
    deviation: float  # (macs - target_macs) / target_macs

    def as_dict(self) -> dict[str, Any]:
        return as_plain_dict(self)


def efficientnet_released_ladder() -> list[ReleasedStep]:
    """EfficientNet's released B1-B7, costed from the presets, against the ideal B0 MACs x 2^phi."""
    base_macs = cost(efficientnet_b0()).macs
    steps = []
    for name, (width, depth, resolution, _) in EFFICIENTNET_COEFFICIENTS.items():
        phi = int(name.removeprefix("efficientnet_b"))
        total = cost(scaled_efficientnet(name))
        target = base_macs * 2**phi
        steps.append(ReleasedStep(phi, name, width, depth, resolution, total.params, total.macs, target,
                                  total.macs / target - 1))
    return sorted(steps, key=lambda step: step.phi)


def efficientnet_ladder_comparison(phis: Sequence[int] = range(1, 8), **ladder_options: Any) -> list[dict[str, Any]]:
    """Our ladder from B0 (``scale_ladder`` options) next to EfficientNet's released one, row per phi."""
    released = {step.phi: step for step in efficientnet_released_ladder()}
    rows = []
    for step in scale_ladder(efficientnet_b0(), phis, **ladder_options):
        row = {"phi": step.phi, "target_macs": step.target_macs, "ours_macs": step.macs,
               "ours_deviation": step.deviation, "ours_params": step.params, "ours_resolution": step.resolution,
               "ours_width": step.width, "ours_depth": step.depth, "ours_method": step.method}
        if step.phi in released:
            theirs = released[step.phi]
            row |= {"released_name": theirs.name, "released_macs": theirs.macs,
                    "released_deviation": theirs.deviation, "released_params": theirs.params,
                    "released_resolution": theirs.resolution}
        rows.append(row)
    return rows
