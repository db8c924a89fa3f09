"""The compound-coefficient solver: a grid over (alpha, beta, gamma) whose MACs land within a tolerance of the
target ratio, ranked closest first, lightest on ties (``solve_coefficients``), and the incremental cost model
both the solver and the ladders use (``ScaledCostModel``).

Costs are exact (``nasscale.spec.cost``'s rules) but incremental: a stage of n repeats costs its first two blocks
plus n - 2 copies of the second, so one evaluation per (channels, resolution) serves every depth.

Light core: no torch; pandas only inside ``table()``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from nasscale.errors import ScalingError, SpecError
from nasscale.spec.arch import Arch, iter_stages, stage_blocks
from nasscale.spec.cost import Cost, block_cost, cost, head_cost, stage_cost, stem_cost

if TYPE_CHECKING:
    import pandas
from nasscale.scale.checks import check_positive, check_tolerance
from nasscale.spec.rescaling import (
    Channels,
    check_resolution,
    rebuild,
    round_resolution,
    scale_arch,
    scaled_channels,
    scaled_layers,
)

EFFICIENTNET_COMPOUND = (1.2, 1.1, 1.15)  # (alpha, beta, gamma) of EfficientNet's grid search on B0
BUDGET_TOLERANCE = 0.02  # budget-exact steps land within 2% of their MAC target
MIN_SEARCH_RESOLUTION = 32  # resolution searches stay at or above this (or the base's own, if smaller)
MAX_SEARCH_RESOLUTION = 16384  # where an uncapped resolution search gives up
WIDTH_NUDGE_STEP = 0.01
WIDTH_NUDGE_RANGE = 0.25
DEFAULT_RAMP_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
DEFAULT_ALLOCATION_WIDTHS = tuple(round(1.0 + 0.05 * index, 2) for index in range(21))  # 1.00 .. 2.00
CRITERIA = ("macs", "ideal")  # what the solver's tolerance applies to: rounded MACs, or alpha*beta^2*gamma^2


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
        return rebuild(self.base, self.channels(width), layers, resolution)

    def _entry(self, channels: Channels, resolution: int) -> _StageCosts:
        key = (channels, resolution)
        if key not in self._entries:
            arch = rebuild(self.base, channels, [2] * len(self.base.stages), resolution)
            placements = list(iter_stages(arch))
            self._entries[key] = _StageCosts(
                fixed=stem_cost(arch) + head_cost(arch),
                two_repeats=tuple(stage_cost(placement) for placement in placements),
                one_more=tuple(block_cost(list(stage_blocks(placement))[1]) for placement in placements),
            )
        return self._entries[key]


def closest_resolution(model: ScaledCostModel, width: float, layers: Sequence[int], target: int, *, low: int,
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


class _Row(Protocol):
    @property
    def feasible(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


RowT = TypeVar("RowT", bound=_Row)


class RowTable(Generic[RowT]):
    """Methods shared by the solver's results; ``rows`` hold ``feasible``, ``accuracy``, ``deviation``, ``params``."""

    __slots__ = ()
    # What the subclasses provide: a dataclass field and a staticmethod.
    rows: tuple[RowT, ...]
    rank_key: Callable[[RowT], tuple[float, ...]]

    def feasible(self) -> list[RowT]:
        return [row for row in self.rows if row.feasible]

    def ranked(self) -> list[RowT]:
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


def lightest_first(row: Any) -> tuple[float, int, float]:
    """Highest accuracy where scored, then fewest params, then closest to the target."""
    return (-row.accuracy if row.accuracy is not None else 0.0, row.params, abs(row.deviation))


def candidate_score(evaluate: Callable[[Arch], float], arch: Arch) -> float:
    value = evaluate(arch)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ScalingError(f"evaluate returned {value!r} for arch {arch.arch_id}; it must return a finite accuracy")
    return float(value)


def as_plain_dict(row: Any) -> dict[str, Any]:
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
        return as_plain_dict(self)


@dataclass(frozen=True, slots=True)
class SolverResult(RowTable[GridCandidate]):
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
    check_positive("target_ratio", target_ratio)
    check_tolerance(tolerance)
    check_resolution("resolution_multiple", resolution_multiple)
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
        accuracy = candidate_score(spec.evaluate, spec.model.arch(beta, layers, resolution))
    return GridCandidate(alpha, beta, gamma, ideal, resolution, spec.model.channels(beta)[1], layers, total.params,
                         total.macs, ratio, deviation, feasible, accuracy, time.perf_counter() - started)


def _grid_values(step: float, max_coefficient: float) -> tuple[float, ...]:
    check_positive("step", step)
    if isinstance(max_coefficient, bool) or not isinstance(max_coefficient, int | float) or max_coefficient < 1:
        raise SpecError("max_coefficient", f"must be at least 1, got {max_coefficient!r}")
    count = int(math.floor((max_coefficient - 1) / step + 1e-9)) + 1
    return tuple(round(1.0 + index * step, 10) for index in range(count))
