"""The samplers and Optuna pruners a search can use, by name. Each trial's sampler is built afresh with a seed made
of the study's seed and the trial number (``TrialSeededSampler``, ``sampler_seed``), so one worker with a fixed seed
repeats its sequence, concurrent workers never share a random stream, and studies of different seeds are
independent.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from nasscale.search.config import SearchConfig
from nasscale.search.evolution import ParetoLocalSearchSampler, RegularizedEvolutionSampler
from nasscale.search.objective import SearchError
from nasscale.search.record import ATTR_DUPLICATE_OF

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
    """The configured sampler, made afresh for each trial with ``sampler_seed`` (see the module docstring).

    A trial right after one that repeated an evaluated architecture is drawn at random instead: a model-based
    sampler (GP, TPE) that ignores the refused repeat would propose it again and again, since nothing it learns
    from changed."""

    def __init__(self, config: SearchConfig):
        self.config = config
        self.by_trial: dict[int, optuna.samplers.BaseSampler] = {}

    def _sampler(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        return self.by_trial[trial.number]

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seed = sampler_seed(self.config.seed, trial.number)
        previous = [other for other in study.get_trials(deepcopy=False) if other.number == trial.number - 1]
        after_repeat = bool(previous) and ATTR_DUPLICATE_OF in previous[0].user_attrs
        self.by_trial[trial.number] = (optuna.samplers.RandomSampler(seed=seed) if after_repeat
                                       else make_sampler(self.config, seed))
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
    """Optuna's pruner of the study. Optuna prunes single-objective studies only; with --pruner mo-asha the
    search stops trials itself (nasscale.search.early_stopping), for any number of objectives."""
    if config.is_multi_objective or config.pruner != "auto":
        return optuna.pruners.NopPruner()
    if config.backend == "ray":
        # ASHA (asynchronous successive halving, Li et al. 2020), decided from the shared storage.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
