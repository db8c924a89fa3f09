"""The Optuna backend: one process runs trials against an Optuna storage (SQLite by default).

Over-budget samples: the budget is checked on the analytic cost right after sampling, so an
over-budget architecture is never built or trained. Its trial is told PRUNED with the reason in the
``infeasible`` attribute; it costs milliseconds and does not count towards ``--trials``. TPE puts
pruned trials in its "bad" group, so it learns to stop proposing over-budget regions; NSGA-II only
breeds from completed (hence feasible) trials.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import optuna

from nasscale.errors import NasscaleError, TrainingDiverged
from nasscale.search import (
    ATTR_FAIL_REASON,
    ATTR_INFEASIBLE,
    ATTR_SEED,
    ATTR_TIMINGS,
    ATTR_TRAINED,
    Progress,
    SearchContext,
    SearchError,
    SilentProgress,
    architecture_attributes,
    budget_violation,
    measure_cost,
    objective_values,
    prepare_context,
    propose,
    train_architecture,
)
from nasscale.study import SearchConfig

logger = logging.getLogger(__name__)

# A killed worker's RUNNING trial is failed once its heartbeat is this old (see fail_stale_trials).
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
# Consecutive over-budget samples after which the budget is judged unreachable in practice.
MAX_CONSECUTIVE_INFEASIBLE = 2000
STUDY_ATTR_CONFIG = "nasscale_config"
STUDY_ATTR_SPACE = "nasscale_space"
STUDY_ATTR_OBJECTIVES = "nasscale_objectives"

# Failed trials are reported by nasscale (with their reason); Optuna would add a traceback per trial.
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TrialFailed(NasscaleError):
    """A trial that could not finish (diverged, out of memory); the study goes on."""


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL; ``journal:PATH`` selects the journal file storage."""
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": 60}}  # workers wait for the lock instead of failing
        elif url.startswith("postgresql"):
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS)
    except (ImportError, ValueError) as error:
        raise SearchError(f"storage {url!r}: {_first_line(error)}") from None
    except Exception as error:  # sqlalchemy's OperationalError and friends: unreachable or refused
        raise SearchError(f"storage {url!r} is unreachable: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def make_sampler(config: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    match config.sampler:
        case "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=config.population_size, seed=seed)
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler {config.sampler!r}")


def make_pruner(config: SearchConfig) -> optuna.pruners.BasePruner:
    # Optuna prunes single-objective studies only; a hopeless trial stops after its first epoch.
    if config.is_multi_objective:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def is_evaluated(trial: optuna.trial.FrozenTrial) -> bool:
    """Trials that count towards --trials: trained (finished, failed or pruned by the pruner)."""
    return trial.user_attrs.get(ATTR_TRAINED, False) and trial.state.is_finished()


def count_evaluated(study: optuna.Study) -> int:
    return sum(is_evaluated(trial) for trial in study.get_trials(deepcopy=False))


def open_or_create_study(config: SearchConfig, storage: optuna.storages.BaseStorage, *,
                         sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    name = config.study_name
    existing = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
    if name in existing:
        recorded = existing[name].user_attrs.get(STUDY_ATTR_OBJECTIVES)
        if recorded is not None and recorded != config.objective_names:
            raise SearchError(f"study {name!r} optimises {','.join(recorded)}, not {','.join(config.objective_names)};"
                              " use the same objectives to resume it, or --study NEW_NAME for a new study")
    study = optuna.create_study(study_name=name, storage=storage, directions=config.directions, sampler=sampler,
                                pruner=make_pruner(config), load_if_exists=True)
    return study


class Objective:
    """Optuna objective: one trial of the search."""

    def __init__(self, context: SearchContext, progress: Progress):
        self.context = context
        self.progress = progress

    def __call__(self, trial: optuna.Trial) -> list[float] | float:
        from nasscale.sampling import OptunaChooser

        config = self.context.config
        started = time.perf_counter()
        arch = propose(OptunaChooser(trial), self.context)
        sample_seconds = time.perf_counter() - started
        trial_cost, cost_seconds = measure_cost(arch)
        for key, value in architecture_attributes(arch, trial_cost).items():
            trial.set_user_attr(key, value)
        reason = budget_violation(trial_cost, config)
        if reason is not None:
            trial.set_user_attr(ATTR_INFEASIBLE, reason)
            raise optuna.TrialPruned(reason)
        seed = config.seed + trial.number
        trial.set_user_attr(ATTR_SEED, seed)
        trial.set_user_attr(ATTR_TRAINED, True)
        self.progress.trial_started(trial.number, arch, trial_cost)
        try:
            attributes = train_architecture(arch, self.context, seed=seed,
                                            on_epoch=lambda epoch, accuracy: self._on_epoch(trial, epoch, accuracy))
        except (TrainingDiverged, MemoryError, RuntimeError) as error:
            trial.set_user_attr(ATTR_FAIL_REASON, f"{type(error).__name__}: {_first_line(error)}")
            raise TrialFailed(_first_line(error)) from error
        attributes[ATTR_TIMINGS] |= {"sample_seconds": sample_seconds, "cost_seconds": cost_seconds}
        for key, value in attributes.items():
            trial.set_user_attr(key, value)
        values = objective_values(attributes["accuracy"], trial_cost, config)
        return values if len(values) > 1 else values[0]

    def _on_epoch(self, trial: optuna.Trial, epoch: int, accuracy: float) -> None:
        config = self.context.config
        self.progress.epoch_finished(trial.number, epoch, config.epochs, accuracy)
        if not config.is_multi_objective:
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"accuracy {accuracy:.3f} after epoch {epoch} is below the median")


class StopWhenDone:
    """Stops the study once it holds ``total`` evaluated trials (across all workers), or when the
    sampler keeps proposing over-budget architectures."""

    def __init__(self, total: int, progress: Progress):
        self.total = total
        self.progress = progress
        self.consecutive_infeasible = 0
        self.gave_up = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if ATTR_INFEASIBLE in trial.user_attrs:
            self.consecutive_infeasible += 1
            if self.consecutive_infeasible >= MAX_CONSECUTIVE_INFEASIBLE:
                self.gave_up = True
                study.stop()
            return
        self.consecutive_infeasible = 0
        values = trial.values if trial.state is optuna.trial.TrialState.COMPLETE else None
        self.progress.trial_finished(trial.number, trial.state.name.lower(), values)
        if count_evaluated(study) >= self.total:
            study.stop()


def run_search(config: SearchConfig, *, progress: Progress | None = None) -> optuna.Study:
    """Run (or resume) the study of ``config`` until it holds ``config.trials`` evaluated trials."""
    progress = progress or SilentProgress()
    context = prepare_context(config)
    storage = make_storage(config.storage)
    study = open_or_create_study(config, storage)
    # A fresh sampler seed per run: a resumed study must not replay the first run's proposals.
    study.sampler = make_sampler(config, config.seed + len(study.get_trials(deepcopy=False)))
    study.set_user_attr(STUDY_ATTR_CONFIG, config.to_dict())
    study.set_user_attr(STUDY_ATTR_SPACE, context.space.to_dict())
    study.set_user_attr(STUDY_ATTR_OBJECTIVES, config.objective_names)
    optuna.storages.fail_stale_trials(study)
    if count_evaluated(study) >= config.trials:
        logger.info("study %s already holds %d trials", config.study_name, count_evaluated(study))
        return study
    stopper = StopWhenDone(config.trials, progress)
    study.optimize(Objective(context, progress), timeout=config.timeout, callbacks=[stopper],
                   catch=(TrialFailed,), gc_after_trial=False)
    if stopper.gave_up:
        raise SearchError(f"{MAX_CONSECUTIVE_INFEASIBLE} samples in a row were over budget; relax --max-macs/"
                          "--max-params or narrow the space")
    return study
