"""Fitting an architecture to a MAC budget along chosen dimensions (``fit_to_budget``): depth only, width only or
resolution only, as EfficientNet's ablation scales a base (Tan & Le 2019, table 3: each single dimension against
compound scaling at equal FLOPs), or width and resolution together, as the MobileNet papers trade a hand-designed
network down or up to a budget with their width multiplier and input size.

Each single dimension is solved on its own grid (depth and width multipliers in ``step`` increments, resolutions
in ``resolution_multiple`` ones): MACs never decrease along any of them, so a bisection finds the grid point
closest to the target after EfficientNet's rounding (``nasscale.spec.rescaling``). Width and resolution together
split the MAC factor evenly in log space, on the actual MACs: the resolution is the one whose MACs at the base's
width are closest to the geometric mean of the base's and the target's (never below ``min_resolution``), and the
width is then fitted to the target at that resolution. Channels round to multiples of 8, so a small network's width
moves its MACs in steps (a 16-channel stage goes to 24 at once): where the fit misses the band (``tolerance``, or
the ladders' 2%), the resolutions next to that one are tried in turn, nearest first, within a quarter of it, and
the first fit in the band (else the closest) is kept; a fit whose width moves against the budget (narrower at a
higher resolution, or the reverse) is never taken. Light core: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasscale.errors import ScalingError, SpecError
from nasscale.scale.checks import check_positive, check_target, check_tolerance
from nasscale.scale.solver import BUDGET_TOLERANCE, ScaledCostModel, as_plain_dict, closest_resolution
from nasscale.spec.arch import Arch, to_dict
from nasscale.spec.cost import cost
from nasscale.spec.rescaling import check_resolution, scaled_layers
from nasscale.units import format_count

DIMENSIONS = ("depth", "width", "resolution", "width+resolution")
FIT_STEP = 0.005  # grid of the depth and width multipliers
MAX_MULTIPLIER = 8.0  # the largest depth or width multiplier tried
RESOLUTION_SPAN = 0.25  # width+resolution: resolutions tried around the even split's, as a fraction of it


@dataclass(frozen=True, slots=True)
class FittedArch:
    """``base`` fitted to ``target_macs`` along ``dimension``: the multipliers applied and what the model costs."""

    dimension: str
    width: float  # width multiplier applied to the base
    depth: float  # depth multiplier applied to every stage (layers are its ceiling)
    resolution: int
    params: int
    macs: int
    target_macs: int
    arch: Arch

    @property
    def deviation(self) -> float:
        return self.macs / self.target_macs - 1

    def as_dict(self, *, include_arch: bool = False) -> dict[str, Any]:
        data = {name: value for name, value in as_plain_dict(self).items() if name != "arch"}
        data |= {"deviation": self.deviation, "arch_id": self.arch.arch_id,
                 "stage_layers": [stage.num_blocks for stage in self.arch.stages],
                 "stage_channels": [stage.out_channels for stage in self.arch.stages]}
        if include_arch:
            data["arch"] = to_dict(self.arch)
        return data


def smallest_resolution(arch: Arch) -> int:
    """The smallest input size ``arch`` accepts: below it some stage would get a 1x1 (or empty) input."""
    for resolution in range(1, arch.resolution + 1):
        try:
            arch.replace(resolution=resolution)
        except SpecError:
            continue
        return resolution
    return arch.resolution


def fit_to_budget(base: Arch, target_macs: int, *, dimension: str, min_resolution: int | None = None,
                  max_resolution: int | None = None, resolution_multiple: int = 1, tolerance: float | None = None,
                  step: float = FIT_STEP, max_multiplier: float = MAX_MULTIPLIER) -> FittedArch:
    """``base`` scaled along ``dimension`` (one of ``DIMENSIONS``) to the MACs closest to ``target_macs``; the other
    dimensions stay the base's. Resolutions stay in [``min_resolution``, ``max_resolution``] (default: the smallest
    the architecture accepts, and no cap). With ``tolerance`` a fit further than that fraction from the target
    raises ScalingError, naming the closest it found."""
    if dimension not in DIMENSIONS:
        raise SpecError("dimension", f"must be one of {', '.join(DIMENSIONS)}, got {dimension!r}")
    check_target(target_macs)
    check_resolution("resolution_multiple", resolution_multiple)
    check_positive("step", step)
    check_positive("max_multiplier", max_multiplier)
    if tolerance is not None:
        check_tolerance(tolerance)
    floor = max(min_resolution or 1, smallest_resolution(base))
    floor = -(-floor // resolution_multiple) * resolution_multiple
    if max_resolution is not None:
        check_resolution("max_resolution", max_resolution)
        if max_resolution < floor:
            raise SpecError("max_resolution", f"must be at least {floor} (the smallest resolution allowed), got "
                                              f"{max_resolution}")
    model = ScaledCostModel(base)
    layers = tuple(stage.num_blocks for stage in base.stages)
    width, depth, resolution = 1.0, 1.0, base.resolution
    if dimension == "depth":
        depth = _closest_multiplier(lambda value: model.cost(1.0, _layers(base, value), resolution).macs,
                                    target_macs, step, max_multiplier)
        layers = _layers(base, depth)
    elif dimension == "resolution":
        resolution, _ = closest_resolution(model, 1.0, layers, target_macs, low=floor, high=max_resolution,
                                           multiple=resolution_multiple)
    elif dimension == "width":
        width = _closest_multiplier(_macs_by_width(model, layers, resolution), target_macs, step, max_multiplier)
    else:  # the resolution takes half the MAC factor (its square root), the width the rest
        growing = target_macs >= cost(base).macs
        half_way = max(1, round((target_macs * cost(base).macs) ** 0.5))
        even, _ = closest_resolution(model, 1.0, layers, half_way, low=floor, high=max_resolution,
                                     multiple=resolution_multiple)
        band = BUDGET_TOLERANCE if tolerance is None else tolerance
        best: tuple[float, float, int] | None = None  # (|deviation|, width, resolution)
        for candidate in _resolutions_near(even, floor, max_resolution, resolution_multiple):
            fitted_width = _closest_multiplier(_macs_by_width(model, layers, candidate), target_macs, step,
                                               max_multiplier)
            miss = abs(model.cost(fitted_width, layers, candidate).macs / target_macs - 1)
            if ((fitted_width >= 1) != growing and fitted_width != 1) or (
                    candidate != base.resolution and (candidate > base.resolution) != growing):
                continue  # both grow, or both shrink: never a narrower network at a higher resolution
            if best is None or miss < best[0]:
                best = (miss, fitted_width, candidate)
            if miss <= band:
                break
        if best is None:  # no resolution near the even split lets the width move the right way
            best = (math.inf, 1.0, even)
        _, width, resolution = best
    arch = model.arch(width, layers, resolution)
    total = cost(arch)  # from the rebuilt architecture itself, not the cache
    fitted = FittedArch(dimension, width, depth, resolution, total.params, total.macs, target_macs, arch)
    if tolerance is not None and abs(fitted.deviation) > tolerance:
        how = "width and resolution" if dimension == "width+resolution" else f"{dimension} alone"
        raise ScalingError(f"{how} cannot bring this architecture within {tolerance:.0%} of "
                           f"{format_count(target_macs)} MACs; closest is {format_count(fitted.macs)} "
                           f"({fitted.deviation:+.1%}) at width {width:.3f}, depth {depth:.3f}, resolution "
                           f"{resolution}")
    return fitted


def _resolutions_near(center: int, floor: int, ceiling: int | None, multiple: int) -> list[int]:
    """``center``, then the resolutions around it nearest first (the smaller on a tie), within RESOLUTION_SPAN of it
    and within [floor, ceiling]."""
    span = max(multiple, round(center * RESOLUTION_SPAN / multiple) * multiple)
    values = range(max(floor, center - span), center + span + 1, multiple)
    allowed = [value for value in values if ceiling is None or value <= ceiling]
    return sorted(allowed, key=lambda value: (abs(value - center), value))


def _macs_by_width(model: ScaledCostModel, layers: tuple[int, ...], resolution: int) -> Callable[[float], int]:
    return lambda width: model.cost(width, layers, resolution).macs


def _layers(base: Arch, depth: float) -> tuple[int, ...]:
    return scaled_layers(base, [depth] * len(base.stages))


def _closest_multiplier(macs_at: Callable[[float], int], target: int, step: float, largest: float) -> float:
    """The multiplier on the grid ``step, 2 step, ..., largest`` whose MACs (never decreasing along it) are closest
    to ``target``; on a tie, the smaller."""

    def at(index: int) -> int:
        return macs_at(round(index * step, 10))

    low, high = 1, max(1, int(largest / step + 1e-9))
    if at(low) >= target:
        return round(low * step, 10)
    if at(high) < target:
        return round(high * step, 10)
    while high - low > 1:  # invariant: at(low) < target <= at(high)
        middle = (low + high) // 2
        if at(middle) < target:
            low = middle
        else:
            high = middle
    index = min((low, high), key=lambda candidate: (abs(at(candidate) - target), candidate))
    return round(index * step, 10)
