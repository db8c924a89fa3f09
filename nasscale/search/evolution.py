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

import random
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nasscale.search.pareto import nondominated_order

# ---------------------------------------------------------------------------------------------- ranking


def rank_and_crowding(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> dict[int, tuple]:
    """trial number -> (non-dominated rank, -crowding distance): smaller is better, as NSGA-II sorts."""
    return nondominated_order({trial.number: trial.values for trial in trials}, directions)  # type: ignore[return-value]


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
    and ``sample_independent`` copies the parent's other decisions. Neither proposes a neighbour some trial has
    tried; what slips through (two decisions making one architecture, two workers at once) the objective catches
    by ``arch_id`` and does not train again."""

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


class RegularizedEvolutionSampler(_MutatingSampler):
    """Regularized (aging) evolution, Real, Aggarwal, Huang and Le 2019 ("Regularized Evolution for Image
    Classifier Architecture Search", AAAI), made multi-objective: the population is the last
    ``population_size`` completed trials (the oldest leaves as a new one arrives); ``sample_size`` of them are
    drawn at random and the best by non-dominated rank and crowding distance among the population is the parent;
    one of its decisions is mutated, to a value no trial has tried with the parent's other decisions (a parent
    whose neighbours were all tried has a random child). Until the population is full, trials are random."""

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
        parent = min(contestants, key=lambda trial: (ranks[trial.number], trial.number))
        untried = untried_mutations(parent, _tried(study))
        if untried:  # else the child is random: every neighbour of the parent has been tried
            name = self.random.choice(sorted({name for name, _ in untried}))  # one choice, then its new value
            self.parent = parent
            self.mutation = (name, self.random.choice([value for other, value in untried if other == name]))


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
        tried = _tried(study)
        front = pareto_front(completed, study.directions)
        self.random.shuffle(front)
        for member in front:
            untried = untried_mutations(member, tried)
            if untried:
                self.parent, self.mutation = member, self.random.choice(untried)
                return


def _tried(study: optuna.Study) -> list[dict[str, Any]]:
    """The decisions of every trial so far, whatever its state (a pruned or failed one is tried too)."""
    return [dict(other.params) for other in study.get_trials(deepcopy=False) if other.params]


def untried_mutations(member: FrozenTrial, tried: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(decision, new value) of each neighbour of ``member`` (one decision changed) no trial has made: a trial made
    it when it differs from ``member`` in that one decision only (it may have made more, for a new block type)."""
    made = set()
    for other in tried:
        differing = [name for name, value in member.params.items() if other.get(name) != value]
        if len(differing) == 1:
            made.add((differing[0], other.get(differing[0])))
    return [(name, value) for name in mutable_decisions(member)
            for value in other_values(member.distributions[name], member.params[name]) if (name, value) not in made]
