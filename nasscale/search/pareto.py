"""Pareto fronts and hypervolume of multi-objective search results, e.g. (accuracy maximize, MACs minimize).

Every function takes ``directions``, one per objective: ``"maximize"`` or ``"minimize"`` (any case; Optuna's
``StudyDirection`` members work too, so ``study.directions`` can be passed as it is). Points are sequences of
numbers, one per objective, in the same order.

- ``dominates(a, b, directions)``: ``a`` is at least as good as ``b`` everywhere and better somewhere.
- ``pareto_front(points, directions)``: indices of the non-dominated points, any number of objectives.
  Equal points do not dominate each other, so duplicates on the front are all kept.
- ``hypervolume_2d(points, directions, reference)``: the area dominated by the points and bounded by the
  reference point. A point that is not strictly better than the reference in both objectives adds nothing.
- ``nondominated_order(points, directions)``: NSGA-II's sort key of each point, (non-dominated rank,
  -crowding distance); smaller is better. The evolution samplers and MO-ASHA rank by it.
- ``hypervolume_over_trials(points, directions, reference)``: the hypervolume after each point, in order, as
  a search's trials arrive; ``None`` stands for a trial without values (failed, pruned), which adds nothing.

Normalise before calling if the objectives have different scales: for (accuracy, MACs) with reference
``(0, max_macs)``, dividing MACs by ``max_macs`` and using reference ``(0, 1)`` puts the hypervolume in [0, 1].

Pure Python, light core: no torch, numpy or optuna.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

MAXIMIZE = "maximize"
MINIMIZE = "minimize"

Point = Sequence[float]


def _signs(directions: Sequence[Any]) -> tuple[int, ...]:
    """+1 for each minimised objective, -1 for each maximised one: ``sign * value`` is then minimised."""
    if isinstance(directions, str):
        raise ValueError(f"directions must be a sequence of 'maximize'/'minimize', one per objective, "
                         f"got the string {directions!r}")
    signs = []
    for direction in directions:
        name = str(getattr(direction, "name", direction)).strip().lower()  # StudyDirection.MAXIMIZE -> maximize
        if name == MAXIMIZE:
            signs.append(-1)
        elif name == MINIMIZE:
            signs.append(1)
        else:
            raise ValueError(f"unknown direction {direction!r}; use 'maximize' or 'minimize'")
    if not signs:
        raise ValueError("directions is empty; give one direction per objective")
    return tuple(signs)


def _as_minimised(point: Point, signs: tuple[int, ...], what: str) -> tuple[float, ...]:
    if len(point) != len(signs):
        raise ValueError(f"{what} has {len(point)} values but there are {len(signs)} directions")
    values = []
    for value in point:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{what} holds {value!r}; objective values must be finite numbers")
        values.append(value)
    return tuple(sign * value for sign, value in zip(signs, values, strict=True))


def _dominates_min(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def dominates(a: Point, b: Point, directions: Sequence[Any]) -> bool:
    """Whether ``a`` Pareto-dominates ``b``: no worse in every objective and strictly better in one."""
    signs = _signs(directions)
    return _dominates_min(_as_minimised(a, signs, "a"), _as_minimised(b, signs, "b"))


def pareto_front(points: Sequence[Point], directions: Sequence[Any]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; equal points are all kept."""
    signs = _signs(directions)
    minimised = [_as_minimised(point, signs, f"point {index}") for index, point in enumerate(points)]
    # In lexicographic order only an earlier point can dominate a later one, and anything an earlier
    # dominated point dominates, a front member dominates too: comparing against the front suffices.
    order = sorted(range(len(minimised)), key=lambda index: minimised[index])
    front: list[int] = []
    for index in order:
        if not any(_dominates_min(minimised[member], minimised[index]) for member in front):
            front.append(index)
    return sorted(front)


def nondominated_order(points: Mapping[Hashable, Point],
                       directions: Sequence[Any]) -> dict[Hashable, tuple[int, float]]:
    """Key -> (non-dominated rank, -crowding distance) (Deb et al. 2002, NSGA-II): rank 0 is the front, the
    front's extremes have infinite crowding distance. Sorting by it puts better points first."""
    signs = _signs(directions)
    remaining = {key: _as_minimised(point, signs, f"point {key!r}") for key, point in points.items()}
    order: dict[Hashable, tuple[int, float]] = {}
    rank = 0
    while remaining:
        front = [key for key, point in remaining.items()
                 if not any(_dominates_min(other, point) for other in remaining.values())]
        crowding = _crowding({key: remaining[key] for key in front})
        for key in front:
            order[key] = (rank, -crowding[key])
            del remaining[key]
        rank += 1
    return order


def _crowding(points: dict[Hashable, tuple[float, ...]]) -> dict[Hashable, float]:
    distance = dict.fromkeys(points, 0.0)
    if not points:
        return distance
    for axis in range(len(next(iter(points.values())))):
        ordered = sorted(points, key=lambda key: points[key][axis])
        span = points[ordered[-1]][axis] - points[ordered[0]][axis]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        for before, middle, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            if span > 0:
                distance[middle] += (points[after][axis] - points[before][axis]) / span
    return distance


def _check_reference(reference: Point, signs: tuple[int, ...]) -> tuple[float, ...]:
    if len(signs) != 2:
        raise ValueError(f"hypervolume_2d needs exactly 2 objectives, got {len(signs)} directions")
    return _as_minimised(reference, signs, "reference")


def _area(minimised: Sequence[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    """Area dominated by minimised 2-D points up to ``reference`` (points beyond it in either axis ignored)."""
    inside = sorted(point for point in minimised if point[0] < reference[0] and point[1] < reference[1])
    area, lowest = 0.0, reference[1]
    for x, y in inside:  # ascending x; each point adds the strip below the lowest y seen so far
        if y < lowest:
            area += (reference[0] - x) * (lowest - y)
            lowest = y
    return area


def hypervolume_2d(points: Sequence[Point], directions: Sequence[Any], reference: Point) -> float:
    """The area of objective space the points dominate, bounded by ``reference`` (0.0 for no points).

    ``reference`` is the worst corner: for (accuracy maximize, MACs minimize) typically ``(0, max_macs)``.
    Points not strictly better than the reference in both objectives add nothing.
    """
    signs = _signs(directions)
    bound = _check_reference(reference, signs)
    return _area([_as_minimised(point, signs, f"point {index}") for index, point in enumerate(points)], bound)


def hypervolume_over_trials(points: Sequence[Point | None], directions: Sequence[Any],
                            reference: Point) -> list[float]:
    """The running hypervolume: element ``i`` is ``hypervolume_2d`` of the points ``0..i`` (``None`` skipped)."""
    signs = _signs(directions)
    bound = _check_reference(reference, signs)
    front: list[tuple[float, ...]] = []
    running: list[float] = []
    volume = 0.0
    for index, point in enumerate(points):
        if point is not None:
            candidate = _as_minimised(point, signs, f"point {index}")
            if not any(_dominates_min(member, candidate) or member == candidate for member in front):
                front = [member for member in front if not _dominates_min(candidate, member)] + [candidate]
                volume = _area(front, bound)
        running.append(volume)
    return running
