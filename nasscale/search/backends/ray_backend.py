"""The Ray backend: ``--workers`` trials at once on a Ray cluster (or a local Ray runtime), written to the
same Optuna storage, with the same trial attributes, as the Optuna backend.

Design: each worker is a Ray actor with ``--cpus-per-trial`` CPUs (and ``--gpus-per-trial`` GPUs) that
runs the Optuna backend's own worker loop, ``run_worker``: ask the shared storage for a trial, sample,
check the budget, claim a slot, train with as many torch threads as it has CPUs, tell. The driver starts
the actors, relays finished trials to the progress display and stops the actors on Ctrl-C or SIGTERM.

Why not ``tune.Tuner`` with ``OptunaSearch``: the Tune driver asks Optuna for every trial itself, one
suggestion at a time, and starts an actor per trial. Measured with Ray 2.60 on a 2-CPU local runtime, 4
trials that sleep 3 s with 1 CPU each (start-end in seconds): OptunaSearch staggered them, 0-3, 1.7-4.7,
6.0-9.0, 8.0-11.0 (0-3, 1.5-4.5, 5.1-8.1, 6.8-9.8 in a second run), so two trials overlapped for 1.3 s
of 3; Tune's default searcher ran pairs at once, 0-3, 0-3, 7.1-10.1, 7.2-10.2, but lost 4 s between
them to per-trial actor start-up, which is longer than a proxy trial on small data. Tune also keeps its
own experiment state beside the study, a second record to reconcile on resume. With long-lived actors
doing ask-and-tell instead:

- N trials run at once whenever the cluster has room for N actors (checked before they start: a
  request that can never fit is an error, not a hang). Each trial records ``started_at``/``finished_at``
  and its ``worker``; tests/search/test_distributed.py checks the intervals overlap on a two-node cluster.
- The study is the single record. Trial numbers, the exact ``--trials`` total, heartbeats, retries of
  killed trials and resume are the storage's, so Ray actors and plain ``nasscale search`` processes can
  share one study, and ``best``, ``report``, ``scale`` and ``dashboard`` read it as any other.
- Early stopping of single-objective studies is ASHA: Optuna's SuccessiveHalvingPruner is asynchronous
  successive halving (the algorithm of Tune's ASHAScheduler), decided from the shared storage, so it
  ranks trials across actors. A trial is never stopped after its last epoch.
- An actor lost with its node is restarted by Ray and runs the loop again; the trial it held is failed
  by its heartbeat and retried.

The sampler seeds each trial from the seed and trial number, so one worker with a fixed seed repeats its
sequence of architectures; with several, every trial's architecture, parameters and seed are recorded
and ``nasscale rerun`` retrains any of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna

from nasscale.errors import NasscaleError, first_line
from nasscale.search.backends.optuna_backend import open_or_create_study, run_worker, shown_state, worker_name
from nasscale.search.config import CONFIG_FIELDS, SearchConfig
from nasscale.search.objective import Progress, SearchError, SilentProgress, prepare_context
from nasscale.search.record import ATTR_SKIPPED
from nasscale.search.resume import fail_stale_trials
from nasscale.search.storage import GRACE_VARIABLE, HEARTBEAT_VARIABLE, make_storage, quiet_optuna
from nasscale.search.trials import Ledger, is_evaluated

logger = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # how often the driver looks for finished trials
STOP_SECONDS = 60.0  # how long interrupted actors get to fail and queue their trials before they are killed
CONNECT_SECONDS = 5.0
ACTOR_RESTARTS = 2  # an actor whose node died is restarted (and its loop rerun) this many times

FORWARDED_VARIABLES = (HEARTBEAT_VARIABLE, GRACE_VARIABLE)
WORKER_NICENESS_VARIABLE = "RAY_worker_niceness"  # read by the raylet this process starts


class SearchWorker:
    """A Ray actor running the Optuna worker loop; threaded (two calls at once) so that ``stop`` can reach it
    while ``run`` trains."""

    def __init__(self) -> None:
        quiet_optuna()  # the actor's process is the worker's entry point, as main() is the CLI's
        self.stop_event = threading.Event()

    def run(self, config_values: dict[str, Any]) -> str:
        import ray

        config = config_from_values(config_values)
        node = ray.get_runtime_context().get_node_id()
        worker = f"{worker_name()} ray node {node[:12]}"
        try:
            run_worker(config, stop_event=self.stop_event, worker=worker)
        except NasscaleError as error:  # a plain SearchError pickles; subclasses with extra arguments may not
            raise SearchError(str(error)) from None
        return worker

    def stop(self) -> None:
        self.stop_event.set()


def config_from_values(values: dict[str, Any]) -> SearchConfig:
    known = {key: value for key, value in values.items() if key in CONFIG_FIELDS}
    known["objectives"] = tuple(known.get("objectives", ()))
    return SearchConfig(**known)


def shared_storage_url(url: str) -> str:
    """The storage URL every actor can open: file paths made absolute (actors run in other folders)."""
    if url.startswith("journal:"):
        return "journal:" + str(Path(url.removeprefix("journal:")).expanduser().resolve())
    if url.startswith("sqlite"):
        prefix, _, path = url.partition(":///")
        if not path or path == ":memory:" or path.startswith(":memory:"):
            raise SearchError(f"storage {url!r}: the Ray backend needs a storage every worker opens: a SQLite or "
                              "journal: file (on a shared file system for several machines) or postgresql://")
        return f"{prefix}:///{Path(path).expanduser().resolve()}"
    return url


# ---------------------------------------------------------------------------------------------- cluster


def connect(config: SearchConfig) -> None:
    """Start a local Ray runtime (no address) or join the cluster at ``config.ray_address``."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray starts its workers at nice 15 so that its daemons stay responsive; with every core training, that let
    # each daemon's or the driver's wake-up preempt a trial at once: with two sharing the two cores, Ray trials ran
    # 13% slower than alone, Optuna workers' 3% (benchmarks/results/workers_throughput_before_niceness_fix.json).
    # A local runtime starts its workers at the driver's priority, as Ray's own job supervisor does; a cluster
    # takes the setting its nodes were started with (README).
    os.environ.setdefault(WORKER_NICENESS_VARIABLE, "0")
    import ray

    address = config.ray_address
    if address is not None and address != "auto":
        require_listening(address)
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        with own_sigterm_handler():
            if address is None:
                # "local", not None: ray.init() would join whatever RAY_ADDRESS names.
                ray.init(address="local", include_dashboard=False, **options)
            else:
                ray.init(address=address, **options)
    except Exception as error:  # ConnectionError, an authentication error, a version mismatch
        where = "start a local Ray runtime" if address is None else f"join the Ray cluster at {address}"
        hint = ""
        if str(error).startswith("Failed to connect") and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            # Ray says only "Failed to connect" when the cluster wants a token this process did not send.
            hint = ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token here too (with its token "
                    "in RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise SearchError(f"cannot {where}: {first_line(error)}{hint}") from None


@contextlib.contextmanager
def own_sigterm_handler() -> Iterator[None]:
    """ray.init() replaces the SIGTERM handler with one that exits at once, leaving the actors' trials running
    until their heartbeats go stale; keep the command's own (SIGTERM stops the workers as Ctrl-C does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def require_listening(address: str) -> None:
    """Fail in seconds, not after Ray's minute of retries, when nothing listens at ``address``."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        raise SearchError(f"--ray-address {address!r}: give auto or HOST:PORT (the head's GCS port, 6379 by default)")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_SECONDS):
            pass
    except OSError as error:
        raise SearchError(f"--ray-address {address}: no Ray cluster answers there ({error.strerror or error}); "
                          "start one with 'ray start --head' or check the address") from None


def placeable_workers(nodes: list[dict[str, Any]], cpus: int, gpus: float) -> int:
    """How many actors of ``cpus`` CPUs and ``gpus`` GPUs the live nodes hold at once."""
    count = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        resources = node.get("Resources", {})
        fits = int(resources.get("CPU", 0) // cpus)
        if gpus > 0:
            fits = min(fits, int(resources.get("GPU", 0) // gpus))
        count += fits
    return count


def require_room(config: SearchConfig) -> None:
    import ray

    room = placeable_workers(ray.nodes(), config.cpus_per_trial, config.gpus_per_trial)
    if room >= config.workers:
        return
    gpus = f" and {config.gpus_per_trial:g} GPUs" if config.gpus_per_trial else ""
    where = "the local Ray runtime (this machine)" if config.ray_address is None else "the Ray cluster"
    if room == 0:
        raise SearchError(f"no node of {where} has {config.cpus_per_trial} CPUs{gpus} for one trial; lower "
                          "--cpus-per-trial/--gpus-per-trial or add a larger node")
    cpus = f"{config.cpus_per_trial} CPU{'s' if config.cpus_per_trial > 1 else ''}"
    raise SearchError(f"--workers {config.workers} of {cpus}{gpus} each do not fit {where}: "
                      f"it runs {room} at once; ask for --workers {room} or fewer")


def start_workers(config: SearchConfig) -> list[Any]:
    import ray

    variables = {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}
    options: dict[str, Any] = {"num_cpus": config.cpus_per_trial, "num_gpus": config.gpus_per_trial,
                               "max_concurrency": 2, "max_restarts": ACTOR_RESTARTS,
                               "max_task_retries": ACTOR_RESTARTS}
    if variables:
        options["runtime_env"] = {"env_vars": variables}
    actor_class = ray.remote(SearchWorker).options(**options)
    return [actor_class.remote() for _ in range(config.workers)]


# ----------------------------------------------------------------------------------------------- driver


class FinishedTrials:
    """Relays trials finished by the actors to the progress display, each once."""

    def __init__(self, study: optuna.Study, progress: Progress):
        self.study = study
        self.progress = progress
        self.reported: set[int] = set()

    def report(self) -> None:
        for trial in self.study.get_trials(deepcopy=False):
            if trial.number in self.reported or not is_evaluated(trial) or ATTR_SKIPPED in trial.user_attrs:
                continue
            self.reported.add(trial.number)
            values = trial.values if trial.state is optuna.trial.TrialState.COMPLETE else None
            self.progress.trial_finished(trial.number, shown_state(trial), values)


def wait_for(runs: list[Any], finished: FinishedTrials) -> None:
    import ray

    pending = list(runs)
    while pending:
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
        for reference in done:
            collect(reference)
        finished.report()


def collect(reference: Any) -> None:
    import ray

    try:
        ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        if isinstance(cause, NasscaleError):
            raise SearchError(str(cause)) from None
        raise SearchError(f"a Ray worker failed: {first_line(cause or error)}") from None
    except ray.exceptions.RayActorError as error:
        raise SearchError(f"a Ray worker died {ACTOR_RESTARTS + 1} times: {first_line(error)}") from None


def stop_workers(actors: list[Any], runs: list[Any]) -> None:
    """Ask each actor to fail and queue its running trial (at the end of the epoch), then wait for them."""
    import ray

    for actor in actors:
        actor.stop.remote()
    ray.wait(runs, num_returns=len(runs), timeout=STOP_SECONDS)


def run_search(config: SearchConfig, *, progress: Progress | None = None) -> optuna.Study:
    """Run (or resume) the study of ``config`` with ``config.workers`` Ray actors until it holds
    ``config.trials`` evaluated trials."""
    progress = progress or SilentProgress()
    config = dataclasses.replace(config, threads=config.cpus_per_trial, storage=shared_storage_url(config.storage))
    if config.latency_table is not None:  # actors run in other folders
        config = dataclasses.replace(config, latency_table=str(Path(config.latency_table).expanduser().resolve()))

    context = prepare_context(config)  # a missing dataset or an impossible budget is one line before Ray starts
    storage = make_storage(config.storage, for_search=True)
    finished = finished_study(config, storage)
    if finished is not None:
        return finished
    connect(config)
    import ray

    try:
        require_room(config)
        study = open_or_create_study(config, storage, context.space)
        actors = start_workers(config)
        runs = [actor.run.remote(config.to_dict()) for actor in actors]
        try:
            wait_for(runs, FinishedTrials(study, progress))
        except KeyboardInterrupt:
            stop_workers(actors, runs)
            raise
    finally:
        ray.shutdown()
    return study


def finished_study(config: SearchConfig, storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    """The study of ``config`` if it already holds its trials: then no Ray runtime is started."""
    names = {summary.study_name for summary in optuna.get_all_study_summaries(storage)}
    if config.study_name not in names:
        return None
    study = optuna.load_study(study_name=config.study_name, storage=storage)
    fail_stale_trials(study)
    return study if Ledger.read(study).evaluated >= config.trials else None


