"""The Optuna backend: a worker runs trials one at a time against an Optuna storage (SQLite by default).
Any number of workers (``nasscale search`` processes, the Ray backend's actors) can share one study.

Over-budget samples: the budget is checked on the analytic cost right after sampling, so an
over-budget architecture is never built or trained. Its trial is told PRUNED with the reason in the
``infeasible`` attribute; it costs milliseconds and does not count towards ``--trials``. TPE puts
pruned trials in its "bad" group, so it learns to stop proposing over-budget regions; NSGA-II only
breeds from completed (hence feasible) trials.

Many workers, one exact total. A feasible trial claims a slot before it trains: under a lock on the
study (a PostgreSQL advisory lock; ``flock`` on ``FILE.nasscale-slots`` beside a SQLite or journal file)
the worker counts the trials holding a slot (trained and finished, or running with a claim) and claims
one only while fewer than ``--trials`` do. A trial that finds them all taken ends PRUNED with a
``skipped`` note, untrained, and its worker waits for the running trials (one may die and need a retry)
or stops once the study holds ``--trials`` evaluated trials. So the study ends with exactly ``--trials``,
however many workers share it. Other databases (MySQL) get no lock: there the total may be exceeded by
at most the number of workers minus one.

No architecture twice. Optuna's samplers do not deduplicate categorical spaces. When a trial's architecture
(by ``arch_id``) was evaluated by another trial, or is training there, the claim (under the same lock) refuses
it: the trial ends PRUNED with ``duplicate_of`` naming that trial, untrained, and does not count towards
``--trials``; the architecture's result is the other trial's. PRUNED rather than COMPLETE with copied values
(Optuna's FAQ shows both) so that tables, fronts, ``best`` and the report hold each architecture once; NSGA-II,
GP and the mutating samplers ignore it, TPE counts it among the bad group, which steers it off the repeat. A
study larger than its space is refused up front, and MAX_CONSECUTIVE_DUPLICATES repeats in a row (a space used
up within the budgets) stop the search with an error.

Early stopping. With ``--pruner mo-asha`` the trial ranks itself at each rung (nasscale.search.early_stopping)
and a stopped one ends PRUNED with ``epochs_trained`` and its training seconds recorded; it counts towards
``--trials`` as Optuna counts pruned trials.

Killed workers. Every running trial beats a heartbeat (NASSCALE_HEARTBEAT_SECONDS, default 10 s; journal
files get one too, see ``HeartbeatJournalStorage``). A worker starting a trial fails the trials whose
heartbeat is older than NASSCALE_GRACE_SECONDS (30 s) and queues each trained one again with the same
parameters and seed, ``retried_from`` naming it (at most MAX_RETRIES times: a trial that keeps killing
its worker, say through the kernel's OOM killer, is dropped). Queued retries go before fresh samples. A
worker stopped by SIGINT/SIGTERM (or a Ray stop) fails its trial with ``interrupted`` and queues it the
same way. Killed and interrupted trials do not count towards ``--trials``; diverged ones do (their
failure is the result).

Sampling. Each trial's sampler is built afresh from the seed and trial number: one worker with a fixed seed
proposes the same sequence every run, concurrent workers never share a random stream, and a resumed
study gets fresh proposals. Optuna's samplers read the history from the storage, so they keep nothing
else between trials.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from nasscale.errors import NasscaleError, TrainingDiverged
from nasscale.search.config import PROXY_SETTING_FIELDS, SearchConfig
from nasscale.search.early_stopping import MultiObjectiveAsha
from nasscale.search.objective import (
    Candidate,
    Progress,
    ScoreFailed,
    SearchContext,
    SearchError,
    SilentProgress,
    assess,
    objective_values,
    prefilter,
    prepare_context,
    propose,
    score_architecture,
    stopped_train_seconds,
    train_architecture,
)
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH_ID,
    ATTR_DUPLICATE_OF,
    ATTR_EPOCHS_TRAINED,
    ATTR_EVALUATOR,
    ATTR_FAIL_REASON,
    ATTR_FINISHED_AT,
    ATTR_INFEASIBLE,
    ATTR_INTERRUPTED,
    ATTR_PREFILTER,
    ATTR_PROXY_SETTINGS,
    ATTR_RETRIED_FROM,
    ATTR_SEED,
    ATTR_SKIPPED,
    ATTR_STARTED_AT,
    ATTR_TIMINGS,
    ATTR_TRAINED,
    ATTR_WORKER,
    STUDY_ATTR_CONFIG,
    STUDY_ATTR_OBJECTIVES,
    STUDY_ATTR_RESOLUTION,
    STUDY_ATTR_SPACE,
    STUDY_ATTR_SPLITS,
)
from nasscale.search.resume import WaitNotice, check_resume, fail_stale_trials
from nasscale.search.samplers import TrialSeededSampler, make_pruner
from nasscale.search.storage import GRACE_VARIABLE, make_storage, slot_lock
from nasscale.search.trials import Ledger, enqueue_retry, failure_reason, holds_slot, is_queued
from nasscale.space.model import SearchSpace
from nasscale.space.sampling import OptunaChooser

logger = logging.getLogger(__name__)
# How often a worker whose slots are all taken looks again (stale trials, finished ones).
WAIT_SECONDS = 1.0
# Consecutive over-budget samples after which the budget is judged unreachable in practice.
MAX_CONSECUTIVE_INFEASIBLE = 2000
# Consecutive samples of evaluated architectures after which the space is judged used up.
MAX_CONSECUTIVE_DUPLICATES = 500


class TrialFailed(NasscaleError):
    """A trial that could not finish (diverged, out of memory); the study goes on."""


class StopRequested(KeyboardInterrupt):
    """A worker was asked to stop (the Ray driver was interrupted): handled like Ctrl-C."""


# -------------------------------------------------------------------------------------- trial accounting


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a trial does not train: every slot is taken, or its architecture was evaluated (``duplicate_of``)."""

    reason: str
    duplicate_of: int | None = None


class Slots:
    """``total`` slots shared by every worker of a study; a trial claims one before it trains."""

    def __init__(self, total: int, lock: Callable[[], Any]):
        self.total = total
        self.lock = lock

    def claim(self, trial: optuna.Trial, seed: int) -> Refusal | None:
        """Claim a slot for ``trial`` (recording its seed and the ``trained`` flag); or say why not. Checked under
        the study's lock, so two workers cannot both claim one architecture."""
        is_retry = ATTR_RETRIED_FROM in trial.user_attrs
        with self.lock():
            others = [other for other in trial.study.get_trials(deepcopy=False) if other.number != trial.number]
            original = evaluated_twin(trial.user_attrs.get(ATTR_ARCH_ID), others)
            if original is not None:
                return Refusal(f"duplicate of trial {original.number} (same architecture): its result stands, not "
                               "trained again", duplicate_of=original.number)
            held = sum(map(holds_slot, others))
            # Fresh samples leave the slots of queued retries to them.
            queued = 0 if is_retry else sum(map(is_queued, others))
            if held + queued >= self.total:
                return Refusal(f"not trained: {held} trials hold the study's {self.total} slots"
                               + (f" and {queued} queued retries wait for them" if queued else ""))
            trial.set_user_attr(ATTR_SEED, seed)
            trial.set_user_attr(ATTR_TRAINED, True)
        return None


def evaluated_twin(arch_id: str | None, others: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The first other trial that evaluated (or is training) the architecture ``arch_id``."""
    if arch_id is None:
        return None
    twins = [other for other in others if other.user_attrs.get(ATTR_ARCH_ID) == arch_id and holds_slot(other)]
    return min(twins, key=lambda other: other.number, default=None)


# ------------------------------------------------------------------------------------------------- study


def open_or_create_study(config: SearchConfig, storage: optuna.storages.BaseStorage, space: SearchSpace, *,
                         sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    name = config.study_name
    existing = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
    if name in existing:
        check_resume(name, existing[name].user_attrs, config, space.to_dict())
    study = optuna.create_study(study_name=name, storage=storage, directions=config.directions, sampler=sampler,
                                pruner=make_pruner(config), load_if_exists=True)
    return study


def record_study_settings(study: optuna.Study, config: SearchConfig, context: SearchContext) -> None:
    values = {STUDY_ATTR_CONFIG: config.to_dict(), STUDY_ATTR_SPACE: context.space.to_dict(),
              STUDY_ATTR_OBJECTIVES: config.objective_names, STUDY_ATTR_SPLITS: context.splits,
              STUDY_ATTR_RESOLUTION: context.resolution}
    recorded = study.user_attrs
    for key, value in values.items():
        if recorded.get(key) != value:  # N workers starting at once need not all write them
            study.set_user_attr(key, value)


def proxy_settings(config: SearchConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in PROXY_SETTING_FIELDS}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ------------------------------------------------------------------------------------------------- trial


class Objective:
    """Optuna objective: one trial of the search."""

    def __init__(self, context: SearchContext, progress: Progress, *, slots: Slots | None = None,
                 worker: str | None = None, stop_event: threading.Event | None = None):
        self.context = context
        self.progress = progress
        self.slots = slots or Slots(context.config.trials, contextlib.nullcontext)
        self.worker = worker or worker_name()
        self.stop_event = stop_event
        config = context.config
        self.early_stopping = None if config.pruner != "mo-asha" else MultiObjectiveAsha.from_settings(
            min_epochs=config.min_epochs, reduction_factor=config.reduction_factor, epochs=config.epochs)

    def __call__(self, trial: optuna.Trial) -> list[float] | float:
        config = self.context.config
        started = time.perf_counter()
        arch = propose(OptunaChooser(trial), self.context)
        sample_seconds = time.perf_counter() - started
        # A training time this study recorded for the architecture is reused (a repeat, a resumed study).
        recorded = [other.user_attrs for other in trial.study.get_trials(deepcopy=False)
                    if other.number != trial.number] if config.needs_train_time else []
        candidate = assess(arch, self.context, recorded=recorded)  # cost, latency, training time and the budgets
        cost_seconds = time.perf_counter() - started - sample_seconds
        for key, value in candidate.attributes().items():
            trial.set_user_attr(key, value)
        if candidate.violation is not None:
            trial.set_user_attr(ATTR_INFEASIBLE, candidate.violation)
            raise optuna.TrialPruned(candidate.violation)
        # A retry keeps the seed of the trial it repeats, so it trains exactly what that one would have.
        seed = trial.user_attrs.get(ATTR_SEED, config.seed + trial.number)
        refusal = self.slots.claim(trial, seed)
        if refusal is not None:
            if refusal.duplicate_of is None:
                trial.set_user_attr(ATTR_SKIPPED, refusal.reason)
            else:
                trial.set_user_attr(ATTR_DUPLICATE_OF, refusal.duplicate_of)
            trial.set_user_attr(ATTR_FAIL_REASON, refusal.reason)  # the note that tables and reports show
            raise optuna.TrialPruned(refusal.reason)
        try:
            candidate = self._prefilter(trial, candidate, seed)
            attributes = self._train(trial, candidate, seed)
        except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM, a Ray stop: the claimed trial is queued again
            self._interrupted(trial, interrupt)
            raise
        attributes[ATTR_TIMINGS] |= {"sample_seconds": sample_seconds, "cost_seconds": cost_seconds}
        for key, value in attributes.items():
            trial.set_user_attr(key, value)
        values = objective_values(attributes[ATTR_ACCURACY], candidate.cost, config, candidate.latency_ms,
                                  candidate.train_ms)
        return values if len(values) > 1 else values[0]

    def _prefilter(self, trial: optuna.Trial, candidate: Candidate, seed: int) -> Candidate:
        """--prefilter NAME:K: the best-scored of the sample and K - 1 random candidates becomes the trial's
        architecture (see nasscale.search.objective)."""
        if self.context.config.prefilter is None:
            return candidate
        others = [other for other in trial.study.get_trials(deepcopy=False) if other.number != trial.number]
        evaluated = frozenset(other.user_attrs[ATTR_ARCH_ID] for other in others
                              if holds_slot(other) and ATTR_ARCH_ID in other.user_attrs)
        try:
            chosen, record = prefilter(candidate, self.context, seed=seed, evaluated=evaluated)
        except ScoreFailed as error:
            trial.set_user_attr(ATTR_FAIL_REASON, f"ScoreFailed: {error}")
            raise TrialFailed(str(error)) from error
        for key, value in (chosen.attributes() | {ATTR_PREFILTER: record}).items():
            trial.set_user_attr(key, value)
        return chosen

    def _evaluate(self, trial: optuna.Trial, candidate: Candidate, seed: int, epochs_done: list[int]) -> dict[str, Any]:
        """Proxy training, or with --evaluator zero-cost:NAME the proxy's score (nothing is trained)."""
        if self.context.config.zero_cost_proxy is not None:
            return score_architecture(candidate.arch, self.context, seed=seed)

        def on_epoch(epoch: int, accuracy: float) -> None:
            epochs_done[0] = epoch
            self._on_epoch(trial, candidate, epoch, accuracy)

        return train_architecture(candidate.arch, self.context, seed=seed, on_epoch=on_epoch)

    def _train(self, trial: optuna.Trial, candidate: Candidate, seed: int) -> dict[str, Any]:
        trial.set_user_attr(ATTR_WORKER, self.worker)
        trial.set_user_attr(ATTR_PROXY_SETTINGS, proxy_settings(self.context.config))
        trial.set_user_attr(ATTR_EVALUATOR, self.context.config.evaluator)
        trial.set_user_attr(ATTR_STARTED_AT, time.time())
        self.progress.trial_started(trial.number, candidate.arch, candidate.cost)
        started, epochs_done = time.perf_counter(), [0]
        try:
            attributes = self._evaluate(trial, candidate, seed, epochs_done)
        except optuna.TrialPruned:  # stopped early by the pruner: its training time is recorded all the same
            trial.set_user_attr(ATTR_EPOCHS_TRAINED, epochs_done[0])
            seconds = stopped_train_seconds(candidate.arch, self.context, epochs_done[0], time.perf_counter() - started)
            trial.set_user_attr(ATTR_TIMINGS, {"train_seconds": seconds})
            trial.set_user_attr(ATTR_FINISHED_AT, time.time())
            raise
        # torch.OutOfMemoryError is a RuntimeError; ScoreFailed: a zero-cost proxy gave no finite score
        except (TrainingDiverged, ScoreFailed, MemoryError, RuntimeError) as error:
            reason = failure_reason(error)
            trial.set_user_attr(ATTR_FAIL_REASON, reason)
            trial.set_user_attr(ATTR_FINISHED_AT, time.time())
            raise TrialFailed(reason) from error
        trained = {ATTR_EPOCHS_TRAINED: epochs_done[0]} if epochs_done[0] else {}  # a zero-cost score trains none
        return attributes | trained | {ATTR_FINISHED_AT: time.time()}

    def _on_epoch(self, trial: optuna.Trial, candidate: Candidate, epoch: int, accuracy: float) -> None:
        config = self.context.config
        self.progress.epoch_finished(trial.number, epoch, config.epochs, accuracy)
        last = epoch >= config.epochs  # a fully trained trial keeps its result: never stopped at the end
        if not last and self.stop_event is not None and self.stop_event.is_set():
            raise StopRequested("stop requested")
        if self.early_stopping is not None and not last:
            values = objective_values(accuracy, candidate.cost, config, candidate.latency_ms, candidate.train_ms)
            stopped = self.early_stopping.check(trial, epoch, values)
            if stopped is not None:
                trial.set_user_attr(ATTR_FAIL_REASON, stopped)  # the note that tables and reports show
                raise optuna.TrialPruned(stopped)
        elif not config.is_multi_objective and config.pruner == "auto":
            trial.report(accuracy, epoch)
            if not last and trial.should_prune():
                raise optuna.TrialPruned(f"accuracy {accuracy:.3f} after epoch {epoch} is below its peers")

    def _interrupted(self, trial: optuna.Trial, interrupt: KeyboardInterrupt) -> None:
        cause = str(interrupt) or "Ctrl-C"
        trial.set_user_attr(ATTR_INTERRUPTED, True)
        trial.set_user_attr(ATTR_FAIL_REASON, f"interrupted ({cause}); queued again")
        frozen = next(other for other in trial.study.get_trials(deepcopy=False) if other.number == trial.number)
        enqueue_retry(trial.study, frozen)


class TrialWatcher:
    """Reports finished trials to the progress display and notices a sampler stuck over budget, or stuck on
    architectures the study has evaluated (a space, or the part of it within the budgets, used up)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.consecutive_infeasible = 0
        self.consecutive_duplicates = 0
        self.gave_up: str | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if ATTR_INFEASIBLE in trial.user_attrs:
            self.consecutive_infeasible += 1
            if self.consecutive_infeasible >= MAX_CONSECUTIVE_INFEASIBLE:
                self.gave_up = (f"{MAX_CONSECUTIVE_INFEASIBLE} samples in a row were over budget; relax --max-macs/"
                                "--max-params/--max-latency/--max-train-ms or narrow the space")
            return
        self.consecutive_infeasible = 0
        if ATTR_DUPLICATE_OF in trial.user_attrs:
            self.consecutive_duplicates += 1
            if self.consecutive_duplicates >= MAX_CONSECUTIVE_DUPLICATES:
                self.gave_up = (f"{MAX_CONSECUTIVE_DUPLICATES} samples in a row repeated architectures the study "
                                "has evaluated: the space (within the budgets) looks used up; lower --trials, relax "
                                "the budgets or widen the space")
            return
        self.consecutive_duplicates = 0
        if ATTR_SKIPPED not in trial.user_attrs:
            values = trial.values if trial.state is TrialState.COMPLETE else None
            self.progress.trial_finished(trial.number, shown_state(trial), values)


def shown_state(trial: optuna.trial.FrozenTrial) -> str:
    """A finished trial's state for the progress display; a failed one with its reason."""
    state = trial.state.name.lower()
    reason = trial.user_attrs.get(ATTR_FAIL_REASON)
    return f"{state} ({reason})" if trial.state is TrialState.FAIL and reason else state


# ------------------------------------------------------------------------------------------------ worker


def run_worker(config: SearchConfig, *, progress: Progress | None = None, stop_event: threading.Event | None = None,
               worker: str | None = None) -> optuna.Study:
    """One worker: run trials of the study of ``config`` until it holds ``config.trials`` evaluated trials
    (counting every worker's), the timeout passes, or ``stop_event`` is set."""
    progress = progress or SilentProgress()
    context = prepare_context(config)
    storage = make_storage(config.storage, for_search=True)
    study = open_or_create_study(config, storage, context.space)
    study.sampler = TrialSeededSampler(config)
    record_study_settings(study, config, context)
    slots = Slots(config.trials, slot_lock(config.storage, storage, study.study_name))
    objective = Objective(context, progress, slots=slots, worker=worker, stop_event=stop_event)
    watcher = TrialWatcher(progress)
    wait_notice = WaitNotice()
    stop = stop_event or threading.Event()
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    while not (stop.is_set() or watcher.gave_up is not None or (deadline is not None and time.monotonic() > deadline)):
        fail_stale_trials(study)
        ledger = Ledger.read(study)
        if ledger.evaluated >= config.trials:
            break
        if ledger.held >= config.trials:  # the last slots are training elsewhere: wait, one may need a retry
            wait_notice(study, config.trials)
            stop.wait(WAIT_SECONDS)
            continue
        try:
            study.optimize(objective, n_trials=1, callbacks=[watcher], catch=(TrialFailed,), gc_after_trial=False)
        except StopRequested:
            break
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as error:
            if not is_lost_trial(error):
                raise
            logger.warning("this worker's trial was failed by another worker: its heartbeat stopped for longer than "
                           "%s (a paused process?); it is queued again", GRACE_VARIABLE)
    if watcher.gave_up is not None:
        raise SearchError(watcher.gave_up)
    return study


def is_lost_trial(error: Exception) -> bool:
    """Optuna's errors for writing to (or telling) a trial that another worker already failed as stale."""
    return isinstance(error, optuna.exceptions.UpdateFinishedTrialError) or str(error).startswith("Cannot tell a")


def run_search(config: SearchConfig, *, progress: Progress | None = None) -> optuna.Study:
    """Run (or resume) the study of ``config`` in this process until it holds ``config.trials`` evaluated
    trials; other processes on the same storage share the work and the total."""
    return run_worker(config, progress=progress)
