"""Compound model scaling: EfficientNet's rounding rules, a compound-coefficient solver, budget-exact ladders
and EfficientNetV2-style non-uniform stage scaling.

The rounding rules are the ones EfficientNet used to derive B1-B7 from B0; the presets apply them rather than
typing the scaled models in. Everything here works on any ``Arch`` (MBConv, Fused-MBConv, sepconv, ConvNeXt)
and returns frozen dataclasses with ``as_dict()``, so the CLI and tables get plain data.

Budget-exact ladders: step phi aims at base MACs x 2^phi. The compound rule (depth alpha^phi, width beta^phi,
resolution gamma^phi) drifts from that target once layers and channels are rounded, so we keep depth and width
and re-solve the resolution: MACs never decrease as the resolution grows, so a bisection over resolutions
(multiples of ``resolution_multiple``) finds the one closest to the target. Where one resolution step is coarser
than the 2% band, the width multiplier is nudged outward from beta^phi in 1% steps, re-solving the resolution
for each, and the first width that lands within 2% is kept.

Costs are exact (cost.py's rules) but incremental: a stage of n repeats costs its first two blocks plus n - 2
copies of the second, so one evaluation per (channels, resolution) serves every depth (``ScaledCostModel``).

Light core: no torch; pandas only inside ``table()``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nasscale.arch import Arch, HeadType, Stage, bottleneck_channels, iter_stages, stage_blocks, to_dict
from nasscale.arch import summary as arch_summary
from nasscale.cost import Cost, block_cost, cost, head_cost, stage_cost, stem_cost
from nasscale.errors import ScalingError, SpecError
from nasscale.units import format_count

if TYPE_CHECKING:
    import pandas

CHANNEL_DIVISOR = 8
EFFICIENTNET_COMPOUND = (1.2, 1.1, 1.15)  # (alpha, beta, gamma) of EfficientNet's grid search on B0
MAX_PHI = 10  # 2^10 x the base's MACs; beyond that a ladder step is no longer a sensible request
BUDGET_TOLERANCE = 0.02  # budget-exact steps land within 2% of their MAC target
V2_MAX_RESOLUTION = 480  # EfficientNetV2's cap on the inference image size
MIN_SEARCH_RESOLUTION = 32  # resolution searches stay at or above this (or the base's own, if smaller)
MAX_SEARCH_RESOLUTION = 16384  # where an uncapped resolution search gives up
WIDTH_NUDGE_STEP = 0.01
WIDTH_NUDGE_RANGE = 0.25
DEFAULT_RAMP_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
DEFAULT_ALLOCATION_WIDTHS = tuple(round(1.0 + 0.05 * index, 2) for index in range(21))  # 1.00 .. 2.00
CRITERIA = ("macs", "ideal")  # what the solver's tolerance applies to: rounded MACs, or alpha*beta^2*gamma^2

Channels = tuple[int, tuple[int, ...], int]  # stem, per stage, head


# ---------------------------------------------------------------------------------------------------------------
# Rounding rules


def round_filters(channels: int, width: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """EfficientNet's channel rounding: nearest multiple of ``divisor``, never more than 10% down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(num_blocks: int, depth: float) -> int:
    return int(math.ceil(depth * num_blocks))


def round_resolution(resolution: float, multiple: int = 1) -> int:
    return max(multiple, int(round(resolution / multiple)) * multiple)


def scaled_channels(arch: Arch, width: float) -> Channels:
    """Stem, per-stage and head widths after rounding. A ConvNeXt stem is as wide as stage 0; both round the
    same number by the same rule, so they stay equal. A norm head has no width (0)."""
    stages = tuple(_grouped_width(stage, round_filters(stage.out_channels, width)) for stage in arch.stages)
    head = round_filters(arch.head_channels, width) if arch.head is HeadType.CONV else 0
    return round_filters(arch.stem_channels, width), stages, head


def scaled_layers(arch: Arch, stage_depths: Sequence[float]) -> tuple[int, ...]:
    return tuple(round_repeats(stage.num_blocks, depth) for stage, depth in zip(arch.stages, stage_depths, strict=True))


def _group_width(stage: Stage) -> int | None:
    """Channels per group of a grouped bottleneck (ResNeXt, RegNet); None for an ungrouped stage."""
    if stage.groups == 1:
        return None
    return bottleneck_channels(stage.out_channels, stage.bottleneck_ratio) // stage.groups


def _grouped_width(stage: Stage, out_channels: int) -> int:
    """The smallest width >= ``out_channels`` whose bottleneck is a whole number of the stage's groups: scaling
    keeps the group width fixed and adds groups, as RegNet and ResNeXt widen."""
    group_width = _group_width(stage)
    if group_width is None:
        return out_channels
    step = CHANNEL_DIVISOR if out_channels % CHANNEL_DIVISOR == 0 else 1  # keep round_filters' multiple of 8
    while bottleneck_channels(out_channels, stage.bottleneck_ratio) % group_width:
        out_channels += step
    return out_channels


def _rebuild(arch: Arch, channels: Channels, layers: Sequence[int], resolution: int) -> Arch:
    stem, stage_channels, head = channels
    stages = tuple(_rescaled_stage(stage, out_channels, num_blocks)
                   for stage, out_channels, num_blocks in zip(arch.stages, stage_channels, layers, strict=True))
    return arch.replace(stages=stages, stem_channels=stem, head_channels=head, resolution=resolution)


def _rescaled_stage(stage: Stage, out_channels: int, num_blocks: int) -> Stage:
    changes: dict[str, Any] = {"num_blocks": num_blocks, "out_channels": out_channels}
    group_width = _group_width(stage)
    if group_width is not None:
        changes["groups"] = bottleneck_channels(out_channels, stage.bottleneck_ratio) // group_width
    return dataclasses.replace(stage, **changes)


def _check_multiplier(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise SpecError(name, f"multiplier must be positive, got {value}")


def scale_arch(arch: Arch, *, width: float = 1.0, depth: float = 1.0, resolution: int | None = None) -> Arch:
    """Scale every stage's width and depth, the stem and the head width, and set the resolution."""
    for name, value in (("width", width), ("depth", depth)):
        _check_multiplier(name, value)
    layers = scaled_layers(arch, [depth] * len(arch.stages))
    return _rebuild(arch, scaled_channels(arch, width), layers, arch.resolution if resolution is None else resolution)


def scale_arch_nonuniform(base: Arch, width: float, stage_depths: Sequence[float], resolution: int,
                          max_resolution: int | None = V2_MAX_RESOLUTION) -> Arch:
    """Scale width uniformly, each stage's depth by its own multiplier, and set a resolution no larger than
    ``max_resolution`` (EfficientNetV2's cap; None lifts it)."""
    _check_multiplier("width", width)
    depths = _check_stage_depths(base, stage_depths)
    _check_resolution("resolution", resolution)
    if max_resolution is not None and resolution > max_resolution:
        raise SpecError("resolution", f"{resolution} exceeds max_resolution {max_resolution}")
    return _rebuild(base, scaled_channels(base, width), scaled_layers(base, depths), resolution)


# ---------------------------------------------------------------------------------------------------------------
# Exact cost of scaled variants, cached


@dataclass(frozen=True, slots=True)
class _StageCosts:
    fixed: Cost  # stem + head: independent of depth
    two_repeats: tuple[Cost, ...]  # each stage with two blocks (ConvNeXt transition included)
    one_more: tuple[Cost, ...]  # each further repeat: same width, stride 1, same size


class ScaledCostModel:
    """Exact params and MACs of ``base`` at any (width, layers per stage, resolution), equal to
    ``cost(rebuilt arch)`` but cached per (rounded channels, resolution) so depth costs a few multiplications."""

    def __init__(self, base: Arch):
        self.base = base
        self._channels: dict[float, Channels] = {}
        self._entries: dict[tuple[Channels, int], _StageCosts] = {}

    def channels(self, width: float) -> Channels:
        if width not in self._channels:
            self._channels[width] = scaled_channels(self.base, width)
        return self._channels[width]

    def cost(self, width: float, layers: Sequence[int], resolution: int) -> Cost:
        entry = self._entry(self.channels(width), resolution)
        params, macs = entry.fixed.params, entry.fixed.macs
        for num_blocks, two, more in zip(layers, entry.two_repeats, entry.one_more, strict=True):
            params += two.params + (num_blocks - 2) * more.params
            macs += two.macs + (num_blocks - 2) * more.macs
        return Cost(params, macs)

    def arch(self, width: float, layers: Sequence[int], resolution: int) -> Arch:
        return _rebuild(self.base, self.channels(width), layers, resolution)

    def _entry(self, channels: Channels, resolution: int) -> _StageCosts:
        key = (channels, resolution)
        if key not in self._entries:
            arch = _rebuild(self.base, channels, [2] * len(self.base.stages), resolution)
            placements = list(iter_stages(arch))
            self._entries[key] = _StageCosts(
                fixed=stem_cost(arch) + head_cost(arch),
                two_repeats=tuple(stage_cost(placement) for placement in placements),
                one_more=tuple(block_cost(list(stage_blocks(placement))[1]) for placement in placements),
            )
        return self._entries[key]


def _closest_resolution(model: ScaledCostModel, width: float, layers: Sequence[int], target: int, *, low: int,
                        high: int | None, multiple: int) -> tuple[int, int]:
    """The resolution (a multiple of ``multiple`` in [low, high]) whose MACs are closest to ``target``, and those
    MACs. MACs never decrease with resolution, so bisection finds where they cross the target."""

    def macs_at(index: int) -> int:
        return model.cost(width, layers, index * multiple).macs

    low_index = -(-low // multiple)
    if high is None:  # no cap: double until the target is passed or the search limit is reached
        high_index = 2 * low_index
        while macs_at(high_index) < target and high_index * multiple < MAX_SEARCH_RESOLUTION:
            high_index = min(2 * high_index, MAX_SEARCH_RESOLUTION // multiple)
    else:
        high_index = max(low_index, high // multiple)
    if macs_at(low_index) >= target:
        return low_index * multiple, macs_at(low_index)
    if macs_at(high_index) < target:
        return high_index * multiple, macs_at(high_index)
    while high_index - low_index > 1:  # invariant: macs_at(low) < target <= macs_at(high)
        middle = (low_index + high_index) // 2
        if macs_at(middle) < target:
            low_index = middle
        else:
            high_index = middle
    index = min((low_index, high_index), key=lambda candidate: abs(macs_at(candidate) - target))
    return index * multiple, macs_at(index)


# ---------------------------------------------------------------------------------------------------------------
# Shared row tables


class _RowTable:
    """Methods shared by the solver's results; ``rows`` hold ``feasible``, ``accuracy``, ``deviation``, ``params``."""

    __slots__ = ()

    def feasible(self) -> list:
        return [row for row in self.rows if row.feasible]

    def ranked(self) -> list:
        """Feasible rows, best first by the result's ``rank_key`` (ties keep grid order)."""
        return sorted(self.feasible(), key=self.rank_key)

    def records(self) -> list[dict[str, Any]]:
        return [row.as_dict() for row in self.rows]

    def table(self) -> pandas.DataFrame:
        import pandas

        return pandas.DataFrame(self.records())


def _closest_first(row: Any) -> tuple[float, float, int]:
    """Highest accuracy where scored, then closest to the target, then fewest params."""
    return (-row.accuracy if row.accuracy is not None else 0.0, abs(row.deviation), row.params)


def _lightest_first(row: Any) -> tuple[float, int, float]:
    """Highest accuracy where scored, then fewest params, then closest to the target."""
    return (-row.accuracy if row.accuracy is not None else 0.0, row.params, abs(row.deviation))


def _score(evaluate: Callable[[Arch], float], arch: Arch) -> float:
    value = evaluate(arch)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ScalingError(f"evaluate returned {value!r} for arch {arch.arch_id}; it must return a finite accuracy")
    return float(value)


def _as_plain_dict(row: Any) -> dict[str, Any]:
    return {field.name: getattr(row, field.name) for field in dataclasses.fields(row)}


# ---------------------------------------------------------------------------------------------------------------
# Compound-coefficient solver


@dataclass(frozen=True, slots=True)
class GridCandidate:
    alpha: float  # depth coefficient
    beta: float  # width coefficient
    gamma: float  # resolution coefficient
    ideal_product: float  # alpha * beta^2 * gamma^2: the paper's MAC factor before rounding
    resolution: int
    stage_channels: tuple[int, ...]
    stage_layers: tuple[int, ...]
    params: int
    macs: int
    mac_ratio: float  # actual MACs after rounding / base MACs
    deviation: float  # (criterion value - target_ratio) / target_ratio
    feasible: bool
    accuracy: float | None  # evaluate's score; None without evaluate or when infeasible
    seconds: float  # cost plus evaluate, for this candidate

    @property
    def coefficients(self) -> tuple[float, float, float]:
        return self.alpha, self.beta, self.gamma

    def as_dict(self) -> dict[str, Any]:
        return _as_plain_dict(self)


@dataclass(frozen=True, slots=True)
class SolverResult(_RowTable):
    base: Arch
    base_params: int
    base_macs: int
    target_ratio: float
    tolerance: float
    criterion: str  # "macs": rounded MAC ratio; "ideal": alpha * beta^2 * gamma^2
    step: float
    rows: tuple[GridCandidate, ...]
    best: GridCandidate
    seconds: float

    rank_key = staticmethod(_closest_first)

    def find(self, alpha: float, beta: float, gamma: float) -> GridCandidate:
        wanted = (alpha, beta, gamma)
        for row in self.rows:
            if all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(row.coefficients, wanted, strict=True)):
                return row
        raise SpecError("coefficients", f"({alpha:g}, {beta:g}, {gamma:g}) is not on the {self.step:g} grid")

    def best_arch(self) -> Arch:
        return scale_arch(self.base, width=self.best.beta, depth=self.best.alpha, resolution=self.best.resolution)

    def summary(self) -> dict[str, Any]:
        """Everything but the rows, as plain data."""
        return {
            "base_arch_id": self.base.arch_id, "base_params": self.base_params, "base_macs": self.base_macs,
            "target_ratio": self.target_ratio, "tolerance": self.tolerance, "criterion": self.criterion,
            "step": self.step, "candidates": len(self.rows), "feasible": len(self.feasible()),
            "best": self.best.as_dict(), "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class _GridSpec:
    base: Arch
    model: ScaledCostModel
    base_macs: int
    target_ratio: float
    tolerance: float
    criterion: str
    resolution_multiple: int
    evaluate: Callable[[Arch], float] | None


def solve_coefficients(base: Arch, *, step: float = 0.05, target_ratio: float = 2.0, tolerance: float = 0.05,
                       max_coefficient: float = 2.0, criterion: str = "macs", resolution_multiple: int = 1,
                       evaluate: Callable[[Arch], float] | None = None,
                       on_candidate: Callable[[GridCandidate], None] | None = None) -> SolverResult:
    """Grid-search alpha, beta, gamma in [1, max_coefficient] by ``step``. A candidate is feasible when its
    criterion lands within ``tolerance`` (relative) of ``target_ratio``: by default the actual MACs after rounding
    of ``scale_arch(base, width=beta, depth=alpha, resolution=round(base.resolution * gamma))`` over the base's
    MACs; with ``criterion="ideal"`` the paper's alpha * beta^2 * gamma^2. ``evaluate`` scores each feasible
    candidate's arch (higher is better) and the best score wins; without it the closest to the target wins.
    Raises ScalingError when nothing is feasible."""
    values = _grid_values(step, max_coefficient)
    _check_positive("target_ratio", target_ratio)
    _check_tolerance(tolerance)
    _check_resolution("resolution_multiple", resolution_multiple)
    if criterion not in CRITERIA:
        raise SpecError("criterion", f"must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    started = time.perf_counter()
    base_cost = cost(base)
    spec = _GridSpec(base, ScaledCostModel(base), base_cost.macs, target_ratio, tolerance, criterion,
                     resolution_multiple, evaluate)
    rows = []
    for alpha in values:
        layers = scaled_layers(base, [alpha] * len(base.stages))
        for beta in values:
            for gamma in values:
                row = _grid_candidate(spec, alpha, beta, gamma, layers)
                rows.append(row)
                if on_candidate is not None:
                    on_candidate(row)
    ranked = sorted((row for row in rows if row.feasible), key=_closest_first)
    if not ranked:
        closest = min(rows, key=lambda row: abs(row.deviation))
        raise ScalingError(
            f"no (alpha, beta, gamma) on the {step:g} grid up to {max_coefficient:g} lands within {tolerance:.1%} "
            f"of {target_ratio:g}x by {criterion}; closest is {closest.coefficients} at {closest.deviation:+.1%} "
            "(raise tolerance or max_coefficient)"
        )
    return SolverResult(base, base_cost.params, base_cost.macs, target_ratio, tolerance, criterion, step,
                        tuple(rows), ranked[0], time.perf_counter() - started)


def _grid_candidate(spec: _GridSpec, alpha: float, beta: float, gamma: float,
                    layers: tuple[int, ...]) -> GridCandidate:
    started = time.perf_counter()
    resolution = round_resolution(spec.base.resolution * gamma, spec.resolution_multiple)
    total = spec.model.cost(beta, layers, resolution)
    ideal = alpha * beta**2 * gamma**2
    ratio = total.macs / spec.base_macs
    deviation = (ratio if spec.criterion == "macs" else ideal) / spec.target_ratio - 1
    feasible = abs(deviation) <= spec.tolerance
    accuracy = None
    if feasible and spec.evaluate is not None:
        accuracy = _score(spec.evaluate, spec.model.arch(beta, layers, resolution))
    return GridCandidate(alpha, beta, gamma, ideal, resolution, spec.model.channels(beta)[1], layers, total.params,
                         total.macs, ratio, deviation, feasible, accuracy, time.perf_counter() - started)


def _grid_values(step: float, max_coefficient: float) -> tuple[float, ...]:
    _check_positive("step", step)
    if isinstance(max_coefficient, bool) or not isinstance(max_coefficient, int | float) or max_coefficient < 1:
        raise SpecError("max_coefficient", f"must be at least 1, got {max_coefficient!r}")
    count = int(math.floor((max_coefficient - 1) / step + 1e-9)) + 1
    return tuple(round(1.0 + index * step, 10) for index in range(count))


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
        data = {name: value for name, value in _as_plain_dict(self).items() if name != "arch"}
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
    steps = _check_phis(phis)
    coefficients = _check_coefficients(EFFICIENTNET_COMPOUND if coefficients is None else coefficients)
    _check_resolution("resolution_multiple", resolution_multiple)
    _check_tolerance(tolerance)
    _check_positive("width_step", width_step)
    _check_positive("width_range", width_range)
    floor = _search_floor(base, resolution_multiple)
    if max_resolution is not None:
        _check_resolution("max_resolution", max_resolution)
        if max_resolution < floor:
            raise SpecError("max_resolution", f"must be at least {floor}, got {max_resolution}")
    base_macs = cost(base).macs
    if target_macs is not None:
        _check_target(target_macs)
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
    if spec.budget_exact and not _within(spec.model.cost(width, layers, resolution).macs, target, spec.tolerance):
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
        resolution, macs = _closest_resolution(spec.model, candidate, layers, target, low=spec.floor,
                                               high=spec.max_resolution, multiple=spec.resolution_multiple)
        if _within(macs, target, spec.tolerance):
            return candidate, resolution, "resolution" if candidate == width else "resolution+width"
        if closest is None or abs(macs / target - 1) < closest[0]:
            closest = (abs(macs / target - 1), candidate, resolution, macs)
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


def _within(macs: int, target: int, tolerance: float) -> bool:
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
        return _as_plain_dict(self)


def efficientnet_released_ladder() -> list[ReleasedStep]:
    """EfficientNet's released B1-B7, costed from the presets, against the ideal B0 MACs x 2^phi."""
    from nasscale import presets  # presets imports this module

    base_macs = cost(presets.efficientnet_b0()).macs
    steps = []
    for name, (width, depth, resolution, _) in presets.EFFICIENTNET_COEFFICIENTS.items():
        phi = int(name.removeprefix("efficientnet_b"))
        total = cost(presets.scaled_efficientnet(name))
        target = base_macs * 2**phi
        steps.append(ReleasedStep(phi, name, width, depth, resolution, total.params, total.macs, target,
                                  total.macs / target - 1))
    return sorted(steps, key=lambda step: step.phi)


def efficientnet_ladder_comparison(phis: Sequence[int] = range(1, 8), **ladder_options: Any) -> list[dict[str, Any]]:
    """Our ladder from B0 (``scale_ladder`` options) next to EfficientNet's released one, row per phi."""
    from nasscale import presets

    released = {step.phi: step for step in efficientnet_released_ladder()}
    rows = []
    for step in scale_ladder(presets.efficientnet_b0(), phis, **ladder_options):
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
        return _as_plain_dict(self)


@dataclass(frozen=True, slots=True)
class AllocationResult(_RowTable):
    base: Arch
    target_macs: int
    max_resolution: int
    tolerance: float
    rows: tuple[AllocationCandidate, ...]
    best: AllocationCandidate
    seconds: float

    rank_key = staticmethod(_lightest_first)

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
    _check_target(target_macs)
    _check_tolerance(tolerance)
    _check_resolution("max_resolution", max_resolution)
    low = base.resolution if min_resolution is None else min_resolution
    _check_resolution("min_resolution", low)
    if low > max_resolution:
        raise SpecError("min_resolution", f"{low} exceeds max_resolution {max_resolution}")
    named = _named_profiles(base, profiles)
    for width in widths:
        _check_multiplier("width", width)
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
    ranked = sorted((row for row in rows if row.feasible), key=_lightest_first)
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
    resolution, _ = _closest_resolution(model, width, layers, target, low=low, high=high, multiple=1)
    total = model.cost(width, layers, resolution)
    feasible = _within(total.macs, target, tolerance)
    accuracy = _score(evaluate, model.arch(width, layers, resolution)) if feasible and evaluate else None
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
    return {name: _check_stage_depths(base, depths, f"profiles[{name!r}]") for name, depths in profiles.items()}


def efficientnetv2_comparison(**allocation_options: Any) -> list[dict[str, Any]]:
    """EfficientNetV2-S scaled by ``solve_stage_allocation`` to the V2-M and V2-L MAC budgets, next to the
    published V2-M and V2-L (costed from the presets, which match the published counts)."""
    from nasscale import presets

    base = presets.efficientnetv2_s()
    rows = []
    for name in ("efficientnetv2_m", "efficientnetv2_l"):
        published = presets.preset_arch(name)
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


# ---------------------------------------------------------------------------------------------------------------
# Argument checks: one line each, naming the argument


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise SpecError(name, f"must be a positive number, got {value!r}")


def _check_tolerance(tolerance: Any) -> None:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise SpecError("tolerance", f"must be a fraction in [0, 1), got {tolerance!r}")


def _check_resolution(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(name, f"must be a positive integer, got {value!r}")


def _check_target(target_macs: Any) -> None:
    if isinstance(target_macs, bool) or not isinstance(target_macs, int) or target_macs < 1:
        raise SpecError("target_macs", f"must be a positive integer count of MACs, got {target_macs!r}")


def _check_phis(phis: Sequence[int]) -> list[int]:
    phis = list(phis)
    if not phis:
        raise SpecError("phis", "must name at least one phi")
    for phi in phis:
        if isinstance(phi, bool) or not isinstance(phi, int) or not 0 <= phi <= MAX_PHI:
            raise SpecError("phi", f"must be an integer in 0..{MAX_PHI}, got {phi!r}")
    return phis


def _check_coefficients(coefficients: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(coefficients)
    if len(values) != 3:
        raise SpecError("coefficients", f"must be (alpha, beta, gamma), got {values!r}")
    for name, value in zip(("alpha", "beta", "gamma"), values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 1:
            raise SpecError(name, f"must be at least 1 (compound scaling never shrinks), got {value!r}")
    return values


def _check_stage_depths(base: Arch, stage_depths: Sequence[float], path: str = "stage_depths") -> tuple[float, ...]:
    depths = tuple(stage_depths)
    if len(depths) != len(base.stages):
        raise SpecError(path, f"needs one multiplier per stage ({len(base.stages)}), got {len(depths)}")
    for index, depth in enumerate(depths):
        _check_multiplier(f"{path}[{index}]", depth)
    return depths
