"""The samplers and pruners a search can use, by name. Each trial's sampler is built afresh with a seed made of the
study's seed and the trial number (``TrialSeededSampler``, ``sampler_seed``), so one worker with a fixed seed
repeats its sequence, concurrent workers never share a random stream, and studies of different seeds are
independent.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nasscale.search.config import SearchConfig
from nasscale.search.evolution import ParetoLocalSearchSampler, RegularizedEvolutionSampler
from nasscale.search.objective import (
    SearchError,
)

# ----------------------------------------------------------------------------------------------- sampler


def make_sampler(config: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    match config.sampler:
        case "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=config.population_size, seed=seed)
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
        case "evolution":
            return RegularizedEvolutionSampler(population_size=config.population_size,
                                               sample_size=config.tournament_size, seed=seed)
        case "local":
            return ParetoLocalSearchSampler(startup_trials=config.population_size, seed=seed)
        case "gp":
            # Decisions that apply to some block types only fall outside its joint space and are drawn at random.
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=config.population_size,
                                             warn_independent_sampling=False)
    raise SearchError(f"unknown sampler {config.sampler!r}")


SEED_STRIDE = 1_000_003  # a prime above any study's trial count


def sampler_seed(seed: int, trial_number: int) -> int:
    """The seed of one trial's sampler: distinct for every (study seed, trial) pair, so that studies with seeds s and
    s + 1 draw independent streams (seed + trial number would make one the other shifted by a trial)."""
    return seed * SEED_STRIDE + trial_number


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """The configured sampler, made afresh for each trial with ``sampler_seed`` (see the module docstring)."""

    def __init__(self, config: SearchConfig):
        self.config = config
        self.by_trial: dict[int, optuna.samplers.BaseSampler] = {}

    def _sampler(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number not in self.by_trial:
            self.by_trial[trial.number] = make_sampler(self.config, sampler_seed(self.config.seed, trial.number))
        return self.by_trial[trial.number]

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._sampler(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                        search_space: dict[str, Any]) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Any) -> None:
        self._sampler(trial).after_trial(study, trial, state, values)
        del self.by_trial[trial.number]

    def reseed_rng(self) -> None:
        for sampler in self.by_trial.values():
            sampler.reseed_rng()


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    # Optuna prunes single-objective studies only; a hopeless trial stops after its first epoch.
    if config.is_multi_objective:
        return optuna.pruners.NopPruner()
    if config.backend == "ray":
        # ASHA (asynchronous successive halving, Li et al. 2020), decided from the shared storage.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
