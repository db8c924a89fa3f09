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

Killed workers. Every running trial beats a heartbeat (NASSCALE_HEARTBEAT_SECONDS, default 10 s; journal
files get one too, see ``HeartbeatJournalStorage``). A worker starting a trial fails the trials whose
heartbeat is older than NASSCALE_GRACE_SECONDS (30 s) and queues each trained one again with the same
parameters and seed, ``retried_from`` naming it (at most MAX_RETRIES times: a trial that keeps killing
its worker, say through the kernel's OOM killer, is dropped). Queued retries go before fresh samples. A
worker stopped by SIGINT/SIGTERM (or a Ray stop) fails its trial with ``interrupted`` and queues it the
same way. Killed and interrupted trials do not count towards ``--trials``; diverged ones do (their
failure is the result).

Sampling. Each trial's sampler is built afresh with seed + trial number: one worker with a fixed seed
proposes the same sequence every run, concurrent workers never share a random stream, and a resumed
study gets fresh proposals. Optuna's samplers read the history from the storage, so they keep nothing
else between trials.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # the RDB storage's heartbeat interface, not re-exported
from optuna.trial import TrialState

from nasscale.errors import NasscaleError, TrainingDiverged
from nasscale.search import (
    ATTR_ACCURACY,
    ATTR_EVALUATOR,
    ATTR_FAIL_REASON,
    ATTR_INFEASIBLE,
    ATTR_PREFILTER,
    ATTR_SEED,
    ATTR_TIMINGS,
    ATTR_TRAINED,
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
    train_architecture,
)
from nasscale.study import SearchConfig

logger = logging.getLogger(__name__)

# A killed worker's RUNNING trial is failed once its heartbeat is this old (see fail_stale_trials).
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
HEARTBEAT_VARIABLE = "NASSCALE_HEARTBEAT_SECONDS"
GRACE_VARIABLE = "NASSCALE_GRACE_SECONDS"
# Times a killed or interrupted trial is queued again before it is dropped.
MAX_RETRIES = 2
# How often a worker whose slots are all taken looks again (stale trials, finished ones).
WAIT_SECONDS = 1.0
# Consecutive over-budget samples after which the budget is judged unreachable in practice.
MAX_CONSECUTIVE_INFEASIBLE = 2000
STUDY_ATTR_CONFIG = "nasscale_config"
STUDY_ATTR_SPACE = "nasscale_space"
STUDY_ATTR_OBJECTIVES = "nasscale_objectives"
SLOT_LOCK_SUFFIX = ".nasscale-slots"
# Trial attributes of distributed runs (the rest are in nasscale.search).
ATTR_SKIPPED = "skipped"  # sampled while the last slot was taken: not trained
ATTR_RETRIED_FROM = "retried_from"  # the killed or interrupted trial this one repeats
ATTR_INTERRUPTED = "interrupted"
ATTR_WORKER = "worker"  # host:pid of the process that trained it
ATTR_STARTED_AT = "started_at"  # wall-clock seconds (Unix time) when training started, and ended
ATTR_FINISHED_AT = "finished_at"
ATTR_PROXY_SETTINGS = "proxy_settings"  # the settings it was trained with, for `nasscale rerun`
PROXY_SETTING_FIELDS = ("data", "validation_fraction", "max_train_samples", "seed", "epochs", "batch_size",
                        "learning_rate", "optimizer", "schedule", "label_smoothing", "proxy_resolution", "threads")
# Optuna's own names for a retry's origin (RetryHeartbeatStaleTrialCallback reads them).
SYSTEM_ATTR_FAILED_TRIAL = "failed_trial"
SYSTEM_ATTR_RETRY_HISTORY = "retry_history"
SYSTEM_ATTR_HEARTBEAT = "nasscale_heartbeat"

# Failed trials are reported by nasscale (with their reason); Optuna would add a traceback per trial.
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class TrialFailed(NasscaleError):
    """A trial that could not finish (diverged, out of memory); the study goes on."""


class StopRequested(KeyboardInterrupt):
    """A worker was asked to stop (the Ray driver was interrupted): handled like Ctrl-C."""


# --------------------------------------------------------------------------------------------- storage


def heartbeat_settings() -> tuple[int, int]:
    """Heartbeat interval and grace period in seconds; tests shorten them through the environment."""
    values = []
    for name, default in ((HEARTBEAT_VARIABLE, HEARTBEAT_SECONDS), (GRACE_VARIABLE, GRACE_SECONDS)):
        text = os.environ.get(name, str(default)).strip()
        if not text.isdigit() or int(text) < 1:
            raise SearchError(f"{name}={text!r}: must be a whole number of seconds, at least 1")
        values.append(int(text))
    interval, grace = values
    if grace <= interval:
        raise SearchError(f"{GRACE_VARIABLE} ({grace}) must be longer than {HEARTBEAT_VARIABLE} ({interval})")
    return interval, grace


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL, with heartbeats; ``journal:PATH`` selects the journal file storage."""
    interval, grace = heartbeat_settings()
    require_folder(url)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            backend = JournalFileBackend(url.removeprefix("journal:"))
            return HeartbeatJournalStorage(backend, heartbeat_interval=interval, grace_period=grace,
                                           stale_trial_callback=retry_stale_trial)
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            engine_kwargs = {"connect_args": {"timeout": 60}}  # workers wait for the lock instead of failing
        elif url.startswith("postgresql"):
            engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
        with schema_lock(url, engine_kwargs):
            return optuna.storages.RDBStorage(database_url(url), engine_kwargs=engine_kwargs,
                                              heartbeat_interval=interval, grace_period=grace,
                                              heartbeat_stale_trial_callback=retry_stale_trial)
    except ImportError as error:
        hint = "; pip install psycopg2-binary" if url.startswith("postgresql") else ""
        raise SearchError(f"storage {url!r}: {_first_line(error)}{hint}") from None
    except ValueError as error:
        raise SearchError(f"storage {url!r}: {_first_line(error)}") from None
    except Exception as error:  # sqlalchemy's OperationalError and friends: unreachable or refused
        raise SearchError(f"storage {url!r} is unreachable: {_first_line(error)}") from None


def require_folder(url: str) -> None:
    """A SQLite or journal file is created on first use, but its folder is not."""
    path = url.removeprefix("journal:") if url.startswith("journal:") else sqlite_path(url)
    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(os.path.expanduser(path)))):
        raise SearchError(f"storage {url!r}: the folder {os.path.dirname(path) or '.'} does not exist; create it "
                          "or fix the path")


def database_url(url: str) -> str:
    """SQLAlchemy 2.1 reads ``postgresql://`` as the psycopg 3 driver; use psycopg2 where only it is installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


@contextlib.contextmanager
def schema_lock(url: str, engine_kwargs: dict[str, Any]) -> Iterator[None]:
    """Workers opening a new database at once would race to create Optuna's tables ("table already exists",
    a unique violation in pg_type): they take turns."""
    path = sqlite_path(url)
    if path is not None:
        with file_lock(path + SLOT_LOCK_SUFFIX):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url(url), **engine_kwargs)
    try:
        with advisory_lock(engine, "nasscale:schema"):
            yield
    finally:
        engine.dispose()


def sqlite_path(url: str) -> str | None:
    """The database file of a sqlite URL; None for other URLs and in-memory databases."""
    if not url.startswith("sqlite"):
        return None
    import sqlalchemy

    database = sqlalchemy.engine.make_url(url).database
    return database if database and database != ":memory:" else None


class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """The journal file storage with the RDB storage's heartbeats, so that killed workers are detected on
    shared file systems too. A beat is a system attribute of the running trial holding the wall-clock time:
    machines sharing the file must agree on the time to well within the grace period."""

    def __init__(self, backend: Any, *, heartbeat_interval: int, grace_period: int,
                 stale_trial_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None]):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, SYSTEM_ATTR_HEARTBEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        oldest = time.time() - self.grace_period
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [trial._trial_id for trial in running
                if trial.system_attrs.get(SYSTEM_ATTR_HEARTBEAT, oldest) < oldest]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None:
        return self.stale_trial_callback


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def failure_reason(error: BaseException) -> str:
    """``TYPE: first line of the message``, e.g. ``OutOfMemoryError: CUDA out of memory. ...``."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


# -------------------------------------------------------------------------------------- trial accounting


def is_trained(trial: optuna.trial.FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(ATTR_TRAINED, False))


def was_cut_short(trial: optuna.trial.FrozenTrial) -> bool:
    """Failed without a result of its own: its worker was killed (heartbeat) or interrupted."""
    attrs = trial.user_attrs
    return trial.state is TrialState.FAIL and (ATTR_FAIL_REASON not in attrs or attrs.get(ATTR_INTERRUPTED, False))


def is_evaluated(trial: optuna.trial.FrozenTrial) -> bool:
    """Trials that count towards --trials: trained to an end (finished, pruned by the pruner, or failed with
    their own reason such as divergence), not cut short by a killed or interrupted worker."""
    return is_trained(trial) and trial.state.is_finished() and not was_cut_short(trial)


def holds_slot(trial: optuna.trial.FrozenTrial) -> bool:
    return is_evaluated(trial) or (trial.state is TrialState.RUNNING and is_trained(trial))


def is_queued(trial: optuna.trial.FrozenTrial) -> bool:
    """Waiting to run (a retry, or a trial someone enqueued), or a retry that has not claimed its slot yet."""
    unclaimed_retry = (trial.state is TrialState.RUNNING and ATTR_RETRIED_FROM in trial.user_attrs
                       and not is_trained(trial))
    return trial.state is TrialState.WAITING or unclaimed_retry


@dataclass(frozen=True, slots=True)
class Ledger:
    """The study-wide counts a worker decides on."""

    evaluated: int
    held: int

    @classmethod
    def read(cls, study: optuna.Study) -> Ledger:
        trials = study.get_trials(deepcopy=False)
        return cls(evaluated=sum(map(is_evaluated, trials)), held=sum(map(holds_slot, trials)))


def retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Heartbeat callback for a trial whose worker died: queue it again if it had started training."""
    if is_trained(trial) or ATTR_RETRIED_FROM in trial.user_attrs:
        enqueue_retry(study, trial)


def enqueue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial`` again with its parameters (hence its architecture) and its seed.

    Not Optuna's RetryHeartbeatStaleTrialCallback: it copies every user attribute, and a copied ``trained``
    flag would count the retry as holding a slot before it claims one. The system attributes are Optuna's,
    so ``RetryHeartbeatStaleTrialCallback.retried_trial_number`` works on these retries too.
    """
    history = [*trial.system_attrs.get(SYSTEM_ATTR_RETRY_HISTORY, []), trial.number]
    if len(history) > MAX_RETRIES:
        logger.warning("trial %d failed %d times in a row; not retried", history[0], len(history))
        return
    user_attrs: dict[str, Any] = {ATTR_RETRIED_FROM: trial.number}
    if ATTR_SEED in trial.user_attrs:
        user_attrs[ATTR_SEED] = trial.user_attrs[ATTR_SEED]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, user_attrs=user_attrs,
        system_attrs={SYSTEM_ATTR_FAILED_TRIAL: history[0], SYSTEM_ATTR_RETRY_HISTORY: history}))


# ----------------------------------------------------------------------------------------------- slots


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    import fcntl

    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield  # closing the file releases the lock, and so does the death of the process


@contextlib.contextmanager
def advisory_lock(engine: Any, name: str) -> Iterator[None]:
    """A PostgreSQL transaction-level advisory lock: released at commit, or when the connection drops."""
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        yield


def slot_lock(url: str, storage: optuna.storages.BaseStorage, study_name: str) -> Callable[[], Any]:
    """The lock that makes slot claims of all workers of a study one at a time."""
    if url.startswith("journal:"):
        path = url.removeprefix("journal:") + SLOT_LOCK_SUFFIX
        return lambda: file_lock(path)
    path = sqlite_path(url)
    if path is not None:
        return lambda: file_lock(path + SLOT_LOCK_SUFFIX)
    if url.startswith("postgresql"):
        engine = storage.engine  # type: ignore[attr-defined]
        return lambda: advisory_lock(engine, f"nasscale:{study_name}")
    return contextlib.nullcontext  # one process, or a database without a lock here: see the module docstring


class Slots:
    """``total`` slots shared by every worker of a study; a trial claims one before it trains."""

    def __init__(self, total: int, lock: Callable[[], Any]):
        self.total = total
        self.lock = lock

    def claim(self, trial: optuna.Trial, seed: int) -> str | None:
        """Claim a slot for ``trial`` (recording its seed and the ``trained`` flag); or say why not."""
        is_retry = ATTR_RETRIED_FROM in trial.user_attrs
        with self.lock():
            others = [other for other in trial.study.get_trials(deepcopy=False) if other.number != trial.number]
            held = sum(map(holds_slot, others))
            # Fresh samples leave the slots of queued retries to them.
            queued = 0 if is_retry else sum(map(is_queued, others))
            if held + queued >= self.total:
                return (f"not trained: {held} trials hold the study's {self.total} slots"
                        + (f" and {queued} queued retries wait for them" if queued else ""))
            trial.set_user_attr(ATTR_SEED, seed)
            trial.set_user_attr(ATTR_TRAINED, True)
        return None


# ----------------------------------------------------------------------------------------------- sampler


def make_sampler(config: SearchConfig, seed: int) -> optuna.samplers.BaseSampler:
    match config.sampler:
        case "nsga2":
            return optuna.samplers.NSGAIISampler(population_size=config.population_size, seed=seed)
        case "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
        case "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler {config.sampler!r}")


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """The configured sampler, made afresh for each trial with seed + trial number (see the module docstring)."""

    def __init__(self, config: SearchConfig):
        self.config = config
        self.by_trial: dict[int, optuna.samplers.BaseSampler] = {}

    def _sampler(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
        if trial.number not in self.by_trial:
            self.by_trial[trial.number] = make_sampler(self.config, self.config.seed + trial.number)
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


# ------------------------------------------------------------------------------------------------- study


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


def record_study_settings(study: optuna.Study, config: SearchConfig, context: SearchContext) -> None:
    values = {STUDY_ATTR_CONFIG: config.to_dict(), STUDY_ATTR_SPACE: context.space.to_dict(),
              STUDY_ATTR_OBJECTIVES: config.objective_names}
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

    def __call__(self, trial: optuna.Trial) -> list[float] | float:
        from nasscale.sampling import OptunaChooser

        config = self.context.config
        started = time.perf_counter()
        arch = propose(OptunaChooser(trial), self.context)
        sample_seconds = time.perf_counter() - started
        candidate = assess(arch, self.context)  # cost, latency (from the table, or measured) and the budgets
        cost_seconds = time.perf_counter() - started - sample_seconds
        for key, value in candidate.attributes().items():
            trial.set_user_attr(key, value)
        if candidate.violation is not None:
            trial.set_user_attr(ATTR_INFEASIBLE, candidate.violation)
            raise optuna.TrialPruned(candidate.violation)
        # A retry keeps the seed of the trial it repeats, so it trains exactly what that one would have.
        seed = trial.user_attrs.get(ATTR_SEED, config.seed + trial.number)
        skipped = self.slots.claim(trial, seed)
        if skipped is not None:
            trial.set_user_attr(ATTR_SKIPPED, skipped)
            trial.set_user_attr(ATTR_FAIL_REASON, skipped)  # the note that tables and reports show
            raise optuna.TrialPruned(skipped)
        try:
            candidate = self._prefilter(trial, candidate, seed)
            attributes = self._train(trial, candidate.arch, candidate.cost, seed)
        except KeyboardInterrupt as interrupt:  # Ctrl-C, SIGTERM, a Ray stop: the claimed trial is queued again
            self._interrupted(trial, interrupt)
            raise
        attributes[ATTR_TIMINGS] |= {"sample_seconds": sample_seconds, "cost_seconds": cost_seconds}
        for key, value in attributes.items():
            trial.set_user_attr(key, value)
        values = objective_values(attributes[ATTR_ACCURACY], candidate.cost, config, candidate.latency_ms)
        return values if len(values) > 1 else values[0]

    def _prefilter(self, trial: optuna.Trial, candidate: Candidate, seed: int) -> Candidate:
        """--prefilter NAME:K: the best-scored of the sample and K - 1 random candidates becomes the trial's
        architecture (see nasscale.search)."""
        if self.context.config.prefilter is None:
            return candidate
        try:
            chosen, record = prefilter(candidate, self.context, seed=seed)
        except ScoreFailed as error:
            trial.set_user_attr(ATTR_FAIL_REASON, f"ScoreFailed: {error}")
            raise TrialFailed(str(error)) from error
        for key, value in (chosen.attributes() | {ATTR_PREFILTER: record}).items():
            trial.set_user_attr(key, value)
        return chosen

    def _evaluate(self, trial: optuna.Trial, arch: Any, seed: int) -> dict[str, Any]:
        """Proxy training, or with --evaluator zero-cost:NAME the proxy's score (nothing is trained)."""
        if self.context.config.zero_cost_proxy is not None:
            return score_architecture(arch, self.context, seed=seed)
        return train_architecture(arch, self.context, seed=seed,
                                  on_epoch=lambda epoch, accuracy: self._on_epoch(trial, epoch, accuracy))

    def _train(self, trial: optuna.Trial, arch: Any, trial_cost: Any, seed: int) -> dict[str, Any]:
        trial.set_user_attr(ATTR_WORKER, self.worker)
        trial.set_user_attr(ATTR_PROXY_SETTINGS, proxy_settings(self.context.config))
        trial.set_user_attr(ATTR_EVALUATOR, self.context.config.evaluator)
        trial.set_user_attr(ATTR_STARTED_AT, time.time())
        self.progress.trial_started(trial.number, arch, trial_cost)
        try:
            attributes = self._evaluate(trial, arch, seed)
        except optuna.TrialPruned:  # stopped early by the pruner: its training time is recorded all the same
            trial.set_user_attr(ATTR_FINISHED_AT, time.time())
            raise
        # torch.OutOfMemoryError is a RuntimeError; ScoreFailed: a zero-cost proxy gave no finite score
        except (TrainingDiverged, ScoreFailed, MemoryError, RuntimeError) as error:
            reason = failure_reason(error)
            trial.set_user_attr(ATTR_FAIL_REASON, reason)
            trial.set_user_attr(ATTR_FINISHED_AT, time.time())
            raise TrialFailed(reason) from error
        return attributes | {ATTR_FINISHED_AT: time.time()}

    def _on_epoch(self, trial: optuna.Trial, epoch: int, accuracy: float) -> None:
        config = self.context.config
        self.progress.epoch_finished(trial.number, epoch, config.epochs, accuracy)
        last = epoch >= config.epochs  # a fully trained trial keeps its result: never stopped at the end
        if not last and self.stop_event is not None and self.stop_event.is_set():
            raise StopRequested("stop requested")
        if not config.is_multi_objective:
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
    """Reports finished trials to the progress display and notices a sampler stuck over budget."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.consecutive_infeasible = 0
        self.gave_up = False

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if ATTR_INFEASIBLE in trial.user_attrs:
            self.consecutive_infeasible += 1
            self.gave_up = self.consecutive_infeasible >= MAX_CONSECUTIVE_INFEASIBLE
            return
        self.consecutive_infeasible = 0
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
    storage = make_storage(config.storage)
    study = open_or_create_study(config, storage)
    study.sampler = TrialSeededSampler(config)
    record_study_settings(study, config, context)
    slots = Slots(config.trials, slot_lock(config.storage, storage, study.study_name))
    objective = Objective(context, progress, slots=slots, worker=worker, stop_event=stop_event)
    watcher = TrialWatcher(progress)
    stop = stop_event or threading.Event()
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    while not (stop.is_set() or watcher.gave_up or (deadline is not None and time.monotonic() > deadline)):
        optuna.storages.fail_stale_trials(study)
        ledger = Ledger.read(study)
        if ledger.evaluated >= config.trials:
            break
        if ledger.held >= config.trials:  # the last slots are training elsewhere: wait, one may need a retry
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
    if watcher.gave_up:
        raise SearchError(f"{MAX_CONSECUTIVE_INFEASIBLE} samples in a row were over budget; relax --max-macs/"
                          "--max-params/--max-latency or narrow the space")
    return study


def is_lost_trial(error: Exception) -> bool:
    """Optuna's errors for writing to (or telling) a trial that another worker already failed as stale."""
    return isinstance(error, optuna.exceptions.UpdateFinishedTrialError) or str(error).startswith("Cannot tell a")


def run_search(config: SearchConfig, *, progress: Progress | None = None) -> optuna.Study:
    """Run (or resume) the study of ``config`` in this process until it holds ``config.trials`` evaluated
    trials; other processes on the same storage share the work and the total."""
    return run_worker(config, progress=progress)
