"""Samplers that mutate good architectures instead of modelling marginals: regularized (aging) evolution and
multi-objective local search, as Optuna samplers, so they work with every storage, resume, several workers and
the Ray backend.

Both work on a trial's parameters, the decisions ``nasscale.space.sampling`` asks for. A child copies a parent's
decisions, one of them changed to another value of its distribution (one architectural choice). A decision the
parent never made (a field that applies only to the child's new block type) is drawn at random, and so are the
decisions of the first trials, before there is a parent. The search's objective then checks budgets and
repeats as it does for any sampler.

Ranking is NSGA-II's (Deb et al. 2002): non-dominated rank first, then crowding distance; a single-objective
study ranks by value.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

# ---------------------------------------------------------------------------------------------- ranking


def _minimised(trial: FrozenTrial, directions: Sequence[StudyDirection]) -> tuple[float, ...]:
    values = trial.values or []
    return tuple(-value if direction is StudyDirection.MAXIMIZE else value
                 for value, direction in zip(values, directions, strict=True))


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def rank_and_crowding(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> dict[int, tuple]:
    """trial number -> (non-dominated rank, -crowding distance): smaller is better, as NSGA-II sorts."""
    points = {trial.number: _minimised(trial, directions) for trial in trials}
    remaining, order, rank = dict(points), {}, 0
    while remaining:
        front = [number for number, point in remaining.items()
                 if not any(_dominates(other, point) for other in remaining.values())]
        crowding = _crowding({number: remaining[number] for number in front})
        for number in front:
            order[number] = (rank, -crowding[number])
            del remaining[number]
        rank += 1
    return order


def _crowding(points: dict[int, tuple[float, ...]]) -> dict[int, float]:
    distance = dict.fromkeys(points, 0.0)
    if not points:
        return distance
    for axis in range(len(next(iter(points.values())))):
        ordered = sorted(points, key=lambda number: points[number][axis])
        span = points[ordered[-1]][axis] - points[ordered[0]][axis]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        for before, middle, after in zip(ordered, ordered[1:], ordered[2:], strict=False):
            if span > 0:
                distance[middle] += (points[after][axis] - points[before][axis]) / span
    return distance


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    ranks = rank_and_crowding(trials, directions)
    return [trial for trial in trials if ranks[trial.number][0] == 0]


# -------------------------------------------------------------------------------------------- mutation


def other_values(distribution: BaseDistribution, current: Any) -> list[Any]:
    """The values a decision could change to; empty for a distribution with one value."""
    if isinstance(distribution, CategoricalDistribution):
        return [choice for choice in distribution.choices if choice != current]
    if isinstance(distribution, IntDistribution):
        return [value for value in range(distribution.low, distribution.high + 1, distribution.step)
                if value != current]
    return []  # nasscale spaces ask categorical and integer questions only


def mutable_decisions(trial: FrozenTrial) -> list[str]:
    return sorted(name for name, distribution in trial.distributions.items()
                  if other_values(distribution, trial.params[name]))


def _completed(study: optuna.Study) -> list[FrozenTrial]:
    return [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if trial.values is not None]


class _MutatingSampler(optuna.samplers.BaseSampler):
    """Shared by both samplers: ``before_trial`` picks ``self.parent`` and ``self.mutation`` (name, new value),
    and ``sample_independent`` copies the parent's other decisions."""

    def __init__(self, *, seed: int | None = None):
        self.random = random.Random(seed)
        self.fallback = optuna.samplers.RandomSampler(seed=seed)
        self.parent: FrozenTrial | None = None
        self.mutation: tuple[str, Any] | None = None

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if self.mutation is not None and param_name == self.mutation[0]:
            return self.mutation[1]
        parent = self.parent
        if parent is not None and param_name in parent.params:
            value = parent.params[param_name]
            if param_distribution._contains(param_distribution.to_internal_repr(value)):
                return value
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        self.random.seed()
        self.fallback.reseed_rng()

    def _mutate(self, parent: FrozenTrial, name: str | None = None) -> None:
        name = name or self.random.choice(mutable_decisions(parent))
        self.parent = parent
        self.mutation = (name, self.random.choice(other_values(parent.distributions[name], parent.params[name])))


class RegularizedEvolutionSampler(_MutatingSampler):
    """Regularized (aging) evolution, Real, Aggarwal, Huang and Le 2019 ("Regularized Evolution for Image
    Classifier Architecture Search", AAAI), made multi-objective: the population is the last
    ``population_size`` completed trials (the oldest leaves as a new one arrives); ``sample_size`` of them are
    drawn at random and the best by non-dominated rank and crowding distance among the population is the parent;
    one of its decisions is mutated. Until the population is full, trials are random."""

    def __init__(self, *, population_size: int = 20, sample_size: int = 5, seed: int | None = None):
        super().__init__(seed=seed)
        self.population_size = population_size
        self.sample_size = min(sample_size, population_size)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        completed = [trial for trial in _completed(study) if mutable_decisions(trial)]
        population = sorted(completed, key=lambda trial: trial.number)[-self.population_size:]
        if len(population) < self.population_size:
            return
        ranks = rank_and_crowding(population, study.directions)
        contestants = self.random.sample(population, self.sample_size)
        self._mutate(min(contestants, key=lambda trial: (ranks[trial.number], trial.number)))


class ParetoLocalSearchSampler(_MutatingSampler):
    """Multi-objective local search, after White, Nolen, Ramakrishnan and Colin 2021 ("Exploring the Loss
    Landscape in Neural Architecture Search", UAI), whose local search beats random, evolution and BO on
    NAS-Bench-101/201: a member of the current Pareto front gets an untried neighbour (one decision changed);
    when every front member's neighbourhood has been tried, a random architecture restarts the search. The
    first ``startup_trials`` are random."""

    def __init__(self, *, startup_trials: int = 10, seed: int | None = None):
        super().__init__(seed=seed)
        self.startup_trials = startup_trials

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        completed = _completed(study)
        if len(completed) < self.startup_trials:
            return
        tried = [dict(other.params) for other in study.get_trials(deepcopy=False) if other.params]
        front = pareto_front(completed, study.directions)
        self.random.shuffle(front)
        for member in front:
            untried = [(name, value) for name in mutable_decisions(member)
                       for value in other_values(member.distributions[name], member.params[name])
                       if not any(_is_neighbour_tried(member.params, name, value, other) for other in tried)]
            if untried:
                name, value = self.random.choice(untried)
                self.parent, self.mutation = member, (name, value)
                return


def _is_neighbour_tried(params: dict[str, Any], name: str, value: Any, other: dict[str, Any]) -> bool:
    """Whether ``other`` made the neighbour's decisions: the parent's, with ``name`` set to ``value``."""
    return other.get(name) == value and all(other.get(key) == item for key, item in params.items() if key != name)
