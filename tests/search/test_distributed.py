"""Distributed search: many workers on one database, killed, stopped and failing trials, unreachable storage,
the Ray backend (two-node cluster, local runtime with ASHA), re-running a trial. Each multi-worker test asserts
exact counts of finished, failed and retried trials and reads the study back with `best`.

PostgreSQL and the two-node Ray cluster come from scripts/start_test_services.sh: either already started
(its exported NASSCALE_TEST_POSTGRES_URL / NASSCALE_TEST_RAY_ADDRESS) or started here for the session and
stopped afterwards. Tests needing them skip, saying what is missing, where the binaries are absent.
Heartbeats are shortened (1 s, grace 5 s) so that killed workers are detected within seconds.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import pytest

from nasscale.errors import SpecError
from nasscale.search.backends.optuna_backend import Slots
from nasscale.search.config import SearchConfig
from nasscale.search.objective import SilentProgress
from nasscale.search.record import (
    ATTR_ARCH_ID,
    ATTR_FAIL_REASON,
    ATTR_FINISHED_AT,
    ATTR_INTERRUPTED,
    ATTR_RETRIED_FROM,
    ATTR_SEED,
    ATTR_SKIPPED,
    ATTR_STARTED_AT,
    ATTR_TRAINED,
    ATTR_WORKER,
)
from nasscale.search.samplers import TrialSeededSampler
from nasscale.search.storage import HeartbeatJournalStorage, make_storage
from nasscale.search.trials import enqueue_retry, is_evaluated
from tests.cli.test_cli_foundation import run_cli

REPOSITORY = Path(__file__).resolve().parent.parent.parent
SERVICES_SCRIPT = REPOSITORY / "scripts" / "start_test_services.sh"
FAST = ["--space", "tiny", "--data", "digits", "--epochs", "1", "--proxy-resolution", "16", "--batch-size", "128"]
WORKER_ENVIRONMENT = {"NASSCALE_HEARTBEAT_SECONDS": "1", "NASSCALE_GRACE_SECONDS": "5", "RAY_AUTH_MODE": "disabled",
                      "RAY_USAGE_STATS_ENABLED": "0"}
WORKER_SECONDS = 240


# -------------------------------------------------------------------------------------------------- helpers


def search_command(storage: str, study: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nasscale.cli", "search", *FAST, "--storage", storage, "--study", study, *extra]


def worker_environment() -> dict[str, str]:
    return os.environ | WORKER_ENVIRONMENT


def start_worker(command: list[str], folder: Path, **options) -> subprocess.Popen:
    # Its own session, so that killing it kills exactly it (and its heartbeat thread with it).
    return subprocess.Popen(command, cwd=folder, env=worker_environment(), start_new_session=True, text=True,
                            **({"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE} | options))


def finish(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        _, err = worker.communicate(timeout=WORKER_SECONDS)
        assert worker.returncode == 0, err


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(storage))


def evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [trial for trial in study.get_trials() if is_evaluated(trial)]


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials():
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def wait_until(condition, *, seconds: float = 120, every: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            found = condition()
        except KeyError:  # the study does not exist yet
            found = None
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"timed out after {seconds} s waiting for {condition.__name__}")


def training_trials(storage: str, name: str):
    """The trials that hold a slot and train right now."""
    def training():
        return [trial for trial in load(storage, name).get_trials()
                if trial.state is optuna.trial.TrialState.RUNNING and trial.user_attrs.get(ATTR_TRAINED)]
    return training


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check_exact_total(study: optuna.Study, total: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly ``total`` evaluated trials, unique numbers, none left running or queued, nothing counted twice."""
    trials = study.get_trials()
    numbers = [trial.number for trial in trials]
    assert numbers == list(range(len(trials)))  # unique and gapless
    done = evaluated(study)
    assert len(done) == total, states(study)
    assert not [trial for trial in trials if not trial.state.is_finished()]
    assert len({trial.user_attrs[ATTR_ARCH_ID] for trial in done}) == total  # no architecture trained twice
    for trial in trials:  # every other trial says why it does not count
        if trial not in done:
            assert ATTR_SKIPPED in trial.user_attrs or trial.state is optuna.trial.TrialState.FAIL
    return done


def best_rows(capsys, storage: str, name: str) -> list[dict]:
    code, out, err = run_cli(capsys, "best", "--study", name, "--storage", storage, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows
    return rows


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------------- services


class Services:
    """scripts/start_test_services.sh run for one service in a private folder, on free ports."""

    def __init__(self, service: str):
        self.service = service
        # Not under pytest's tmp_path: PostgreSQL runs as the postgres user when the tests run as root, and
        # pytest's folders are private to the test user.
        self.folder = Path(tempfile.mkdtemp(prefix="nasscale-services-"))
        self.folder.chmod(0o755)
        self.environment = os.environ | {"NASSCALE_SERVICES_DIR": str(self.folder),
                                         "NASSCALE_PG_PORT": str(free_port()),
                                         "NASSCALE_RAY_PORT": str(free_port())}

    def start(self) -> dict[str, str]:
        result = subprocess.run(["bash", str(SERVICES_SCRIPT), self.service], env=self.environment, text=True,
                                capture_output=True, timeout=300)
        if result.returncode != 0:
            self.stop()
            pytest.fail(f"start_test_services.sh {self.service} failed: {result.stderr.strip()}")
        exports = {}
        for line in result.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            exports[name] = value
        return exports

    def stop(self) -> None:
        subprocess.run(["bash", str(SERVICES_SCRIPT), "--stop", self.service], env=self.environment,
                       capture_output=True, timeout=120)
        shutil.rmtree(self.folder, ignore_errors=True)


def postgres_missing() -> str | None:
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    found = shutil.which("pg_ctl") or any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        return "PostgreSQL is not installed (scripts/install-test-packages.sh installs it)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as the postgres user"
    return None


@pytest.fixture(scope="module")
def postgres_url():
    if os.environ.get("NASSCALE_TEST_POSTGRES_URL"):
        yield os.environ["NASSCALE_TEST_POSTGRES_URL"]
        return
    missing = postgres_missing()
    if missing:
        pytest.skip(f"needs PostgreSQL: {missing}; or set NASSCALE_TEST_POSTGRES_URL "
                    "(scripts/start_test_services.sh)")
    services = Services("postgres")
    try:
        yield services.start()["NASSCALE_TEST_POSTGRES_URL"]
    finally:
        services.stop()


@pytest.fixture(scope="module")
def ray_address():
    if os.environ.get("NASSCALE_TEST_RAY_ADDRESS"):
        yield os.environ["NASSCALE_TEST_RAY_ADDRESS"]
        return
    if shutil.which("ray") is None:
        pytest.skip("needs the ray command (pip install 'ray[tune]'); or set NASSCALE_TEST_RAY_ADDRESS "
                    "(scripts/start_test_services.sh)")
    services = Services("ray")
    try:
        yield services.start()["NASSCALE_TEST_RAY_ADDRESS"]
    finally:
        services.stop()


# ------------------------------------------------------------------------------------------------ pure parts


def test_ray_flags_are_validated():
    with pytest.raises(SpecError, match="workers: applies to --backend ray"):
        SearchConfig(workers=2)
    with pytest.raises(SpecError, match="threads: with the ray backend each trial uses --cpus-per-trial"):
        SearchConfig(backend="ray", cpus_per_trial=2, threads=3)
    with pytest.raises(SpecError, match="backend: must be one of optuna, ray"):
        SearchConfig(backend="dask")
    with pytest.raises(SpecError, match="gpus_per_trial: must be a number >= 0"):
        SearchConfig(backend="ray", gpus_per_trial=-1)
    with pytest.raises(SpecError, match="gpus_per_trial: reserves GPUs that trials use only with --device cuda"):
        SearchConfig(backend="ray", gpus_per_trial=1)
    assert SearchConfig(backend="ray", workers=4, cpus_per_trial=2, gpus_per_trial=0.5, device="cuda").workers == 4


def test_ray_resources_and_storage_paths(tmp_path, monkeypatch):
    from nasscale.search.backends.ray_backend import placeable_workers, shared_storage_url
    from nasscale.search.objective import SearchError

    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 3.0}},
             {"Alive": False, "Resources": {"CPU": 64.0}}]
    assert placeable_workers(nodes, 2, 0) == 3
    assert placeable_workers(nodes, 1, 0.5) == 2
    monkeypatch.chdir(tmp_path)
    assert shared_storage_url("sqlite:///study.db") == f"sqlite:///{tmp_path / 'study.db'}"
    assert shared_storage_url("journal:study.log") == f"journal:{tmp_path / 'study.log'}"
    assert shared_storage_url("postgresql://host/db") == "postgresql://host/db"
    with pytest.raises(SearchError, match="needs a storage every worker opens"):
        shared_storage_url("sqlite:///:memory:")


def _study(tmp_path, name: str = "slots") -> optuna.Study:
    return optuna.create_study(study_name=name, storage=make_storage(f"sqlite:///{tmp_path / 'slots.db'}"),
                               directions=["maximize"])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_slots_make_the_total_exact_and_retries_go_first(tmp_path):
    study = _study(tmp_path)
    slots = Slots(2, contextlib.nullcontext)
    first, second, third, fresh = study.ask(), study.ask(), study.ask(), study.ask()
    for trial in (first, second, third, fresh):
        trial.suggest_int("width", 1, 9)
    assert slots.claim(first, 10) is None and slots.claim(second, 11) is None
    assert slots.claim(third, 12).reason.startswith("not trained: 2 trials hold the study's 2 slots")
    study.tell(third, state=optuna.trial.TrialState.PRUNED)
    # A killed trial frees its slot and is queued again; a fresh sample leaves that slot to the retry.
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    enqueue_retry(study, study.get_trials()[first.number])
    assert slots.claim(fresh, 13).reason.endswith("and 1 queued retries wait for them")
    retry = study.ask()
    assert retry.user_attrs == {ATTR_RETRIED_FROM: first.number, ATTR_SEED: 10}
    assert retry.params == first.params
    assert slots.claim(retry, 10) is None


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_an_architecture_training_or_trained_elsewhere_is_not_claimed_again(tmp_path):
    study = _study(tmp_path, "twins")
    slots = Slots(10, contextlib.nullcontext)
    training, twin, later, other = study.ask(), study.ask(), study.ask(), study.ask()
    for trial, arch_id in ((training, "a1"), (twin, "a1"), (later, "a1"), (other, "b2")):
        trial.set_user_attr(ATTR_ARCH_ID, arch_id)
    assert slots.claim(training, 1) is None  # another worker trains a1 now
    refusal = slots.claim(twin, 2)
    assert refusal.duplicate_of == training.number and refusal.reason.startswith(
        f"duplicate of trial {training.number}")
    study.tell(training, 0.5)
    assert slots.claim(later, 3).duplicate_of == training.number  # and once it is done
    assert slots.claim(other, 4) is None
    assert ATTR_TRAINED not in study.get_trials()[twin.number].user_attrs  # the refused one holds no slot


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_killed_interrupted_and_diverged_trials_are_counted_apart(tmp_path):
    study = _study(tmp_path)
    outcomes = {"complete": {}, "diverged": {ATTR_FAIL_REASON: "TrainingDiverged: loss is nan"},
                "killed": {}, "interrupted": {ATTR_FAIL_REASON: "interrupted", ATTR_INTERRUPTED: True}}
    for name, attrs in outcomes.items():
        trial = study.ask()
        trial.set_user_attr(ATTR_TRAINED, True)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        if name == "complete":
            study.tell(trial, 0.5)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    counted = [trial.number for trial in study.get_trials() if is_evaluated(trial)]
    assert counted == [0, 1]  # killed and interrupted trials are retried instead


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_journal_storage_detects_a_dead_worker(tmp_path, monkeypatch):
    """The journal file storage has no heartbeats of its own; nasscale adds them."""
    monkeypatch.setenv("NASSCALE_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("NASSCALE_GRACE_SECONDS", "2")
    storage = make_storage(f"journal:{tmp_path / 'study.log'}")
    assert isinstance(storage, HeartbeatJournalStorage)
    study = optuna.create_study(study_name="journal", storage=storage)
    trial = study.ask()
    trial.suggest_int("width", 1, 9)
    trial.set_user_attr(ATTR_TRAINED, True)
    trial.set_user_attr(ATTR_SEED, 7)
    storage.record_heartbeat(trial._trial_id)
    optuna.storages.fail_stale_trials(study)
    assert study.get_trials()[0].state is optuna.trial.TrialState.RUNNING  # beating recently
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3)
    optuna.storages.fail_stale_trials(study)
    killed, retry = study.get_trials()
    assert killed.state is optuna.trial.TrialState.FAIL
    assert retry.state is optuna.trial.TrialState.WAITING and retry.params == killed.params
    assert retry.user_attrs == {ATTR_RETRIED_FROM: 0, ATTR_SEED: 7}


def test_each_trial_samples_from_its_own_seed():
    """Proposals depend on the seed and the trial number, not on which worker asks or when."""
    def widths(order):
        config = SearchConfig(sampler="random", seed=3)
        study = optuna.create_study(sampler=TrialSeededSampler(config))
        trials = [study.ask() for _ in range(3)]
        return {trials[index].number: trials[index].suggest_int("width", 1, 1000) for index in order}

    assert widths([0, 1, 2]) == widths([2, 0, 1])
    assert len(set(widths([0, 1, 2]).values())) == 3


def test_single_objective_ray_studies_stop_early_with_asha():
    """ASHA (Optuna's asynchronous successive halving) on the Ray backend, the median rule on the Optuna backend,
    and no early stopping where Optuna cannot prune (several objectives)."""
    from nasscale.search.samplers import make_pruner

    reward = {"reward": "mnas", "target_macs": 1_000_000}
    asha = make_pruner(SearchConfig(backend="ray", **reward))
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    assert (asha._min_resource, asha._reduction_factor) == (1, 3)  # rungs at epochs 1, 3, 9, ...
    assert isinstance(make_pruner(SearchConfig(backend="ray", objectives=("accuracy",))),
                      optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner(SearchConfig(backend="ray")), optuna.pruners.NopPruner)  # accuracy and MACs
    assert isinstance(make_pruner(SearchConfig(**reward)), optuna.pruners.MedianPruner)


# --------------------------------------------------------------------------------------- errors and rerun


def test_unreachable_storage_and_cluster_fail_fast_in_one_line(capsys, tmp_path):
    """One line on stderr and status 2, without a hang: the searches run in their own process under a time limit
    well below what a hang would take; the other cases cannot block for long (a refused connection, a 5 s probe)."""
    pytest.importorskip("psycopg2")
    closed = free_port()
    nobody = f"postgresql://postgres@127.0.0.1:{closed}/nasscale"
    cases = [
        (["search", *FAST, "--storage", "postgresql://127.0.0.1:1/x"],
         "nasscale: error: storage 'postgresql://127.0.0.1:1/x' is unreachable: "),
        (["search", *FAST, "--storage", nobody, "--backend", "ray"],  # before any Ray runtime starts
         f"nasscale: error: storage {nobody!r} is unreachable: "),
    ]
    commands = [subprocess.Popen([sys.executable, "-m", "nasscale.cli", *args], cwd=tmp_path, env=worker_environment(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args, _ in cases]
    for command, (args, expected) in zip(commands, cases, strict=True):
        try:
            out, err = command.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            command.kill()
            pytest.fail(f"nasscale {' '.join(args)} hung")
        assert command.returncode == 2 and err.startswith(expected) and err.count("\n") == 1, (args, err)
        assert out == ""
    missing = tmp_path / "missing" / "study.db"
    for args, expected in [
        (["best", "--study", "s", "--storage", nobody], f"nasscale: error: storage {nobody!r} is unreachable: "),
        (["search", *FAST, "--backend", "ray", "--ray-address", f"127.0.0.1:{closed}", "--storage",
          f"sqlite:///{tmp_path / 'study.db'}"],
         f"nasscale: error: --ray-address 127.0.0.1:{closed}: no Ray cluster answers there"),
        (["search", *FAST, "--storage", f"sqlite:///{missing}"],
         f"nasscale: error: storage 'sqlite:///{missing}': the folder {missing.parent} does not exist; create it or "
         "fix the path"),
        (["search", *FAST, "--workers", "2"], "nasscale: error: workers: applies to --backend ray"),
    ]:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and err.startswith(expected) and err.count("\n") == 1, err


def test_diverged_and_out_of_memory_trials_fail_with_their_reason_and_the_study_goes_on(capsys, tmp_path,
                                                                                         monkeypatch):
    """Trial 1 diverges for real (its learning rate makes the loss overflow); trials 2 and 3 run out of memory
    (CUDA's error, Python's). Each fails with its reason, counts towards --trials (its failure is its result, so
    it is not retried), and the search trains the others to the total."""
    import dataclasses

    import torch

    from nasscale.search.backends import optuna_backend

    real_training = optuna_backend.train_architecture
    seed = 11

    def training(arch, context, *, seed, on_epoch=None):
        match seed - 11:  # the trial number: trial n trains with seed + n
            case 1:
                context = dataclasses.replace(context, config=dataclasses.replace(context.config, learning_rate=1e12))
            case 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            case 3:
                raise MemoryError
        return real_training(arch, context, seed=seed, on_epoch=on_epoch)

    class Shown(SilentProgress):  # what the progress display is told
        def __init__(self):
            self.lines = {}

        def trial_finished(self, number, state, values):
            self.lines[number] = state

    monkeypatch.setattr(optuna_backend, "train_architecture", training)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = SearchConfig(space="tiny", epochs=1, proxy_resolution=16, batch_size=128, trials=5, sampler="random",
                          seed=seed, storage=storage, study="faults")
    shown = Shown()
    optuna_backend.run_search(config, progress=shown)
    study = load(storage, "faults")
    assert states(study) == {"COMPLETE": 2, "FAIL": 3}
    trials = study.get_trials()
    assert len(evaluated(study)) == 5
    assert not [trial for trial in trials if ATTR_RETRIED_FROM in trial.user_attrs]
    reasons = {trial.number: trial.user_attrs.get(ATTR_FAIL_REASON) for trial in trials}
    assert reasons[1].startswith("TrainingDiverged: training diverged: the ")
    assert reasons[2] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert reasons[3] == "MemoryError"
    assert reasons[0] is None and reasons[4] is None
    assert shown.lines[2] == f"fail ({reasons[2]})" and shown.lines[0] == "complete"  # shown as it happens
    assert {row["trial"] for row in best_rows(capsys, storage, "faults")} == {0, 4}


def test_rerun_repeats_the_recorded_accuracy(capsys, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(capsys, "search", *FAST, "--epochs", "2", "--trials", "2", "--storage", storage,
                           "--study", "again", "--sampler", "random")
    assert code == 0, err
    for number in (0, 1):
        code, out, err = run_cli(capsys, "rerun", "--study", "again", "--trial", str(number), "--storage", storage,
                                 "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["identical"] and result["rerun_accuracy"] == result["recorded_accuracy"]
        assert [row["epoch"] for row in result["epochs"]] == [1, 2]
    code, out, _ = run_cli(capsys, "rerun", "--study", "again", "--trial", "0", "--storage", storage)
    assert code == 0 and "identical to the recorded accuracies" in out
    # A study scored by a zero-cost proxy is re-scored, not trained.
    code, _, err = run_cli(capsys, "search", *FAST, "--trials", "1", "--storage", storage, "--study", "scored",
                           "--evaluator", "zero-cost:synflow")
    assert code == 0, err
    code, out, err = run_cli(capsys, "rerun", "--study", "scored", "--trial", "0", "--storage", storage, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["identical"] and result["epochs"] == [] and result["evaluator"] == "zero-cost:synflow"


# ------------------------------------------------------------------------------------- workers on one study


def check_workers_share_the_total(capsys, tmp_path, storage: str) -> optuna.Study:
    """Four `nasscale search` processes, one study, --trials 8: exactly 8 evaluated trials."""
    name = unique_name("workers")
    command = search_command(storage, name, "--trials", "8", "--json")
    workers = [start_worker(command, tmp_path, stdout=subprocess.PIPE) for _ in range(4)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=WORKER_SECONDS)
        assert worker.returncode == 0, err
        outputs.append(json.loads(out))
    study = load(storage, name)
    done = check_exact_total(study, 8)
    # Nothing failed, so nothing was retried; any other trial is a sample that found every slot taken.
    skipped = [trial for trial in study.get_trials() if ATTR_SKIPPED in trial.user_attrs]
    assert states(study) == {"COMPLETE": 8} | ({"PRUNED": len(skipped)} if skipped else {})
    assert not [trial for trial in study.get_trials() if ATTR_RETRIED_FROM in trial.user_attrs]
    assert len({trial.user_attrs[ATTR_WORKER] for trial in done}) >= 2  # they did share the work
    assert all(output["study"] == name for output in outputs)
    assert {row["trial"] for row in best_rows(capsys, storage, name)} <= {trial.number for trial in done}
    return study


def test_four_workers_on_sqlite_train_exactly_the_total(capsys, tmp_path):
    check_workers_share_the_total(capsys, tmp_path, f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.slow
def test_four_workers_on_a_journal_file_train_exactly_the_total(capsys, tmp_path):
    check_workers_share_the_total(capsys, tmp_path, f"journal:{tmp_path / 'study.log'}")


@pytest.mark.services
def test_four_workers_on_postgresql_train_exactly_the_total(capsys, tmp_path, postgres_url):
    study = check_workers_share_the_total(capsys, tmp_path, postgres_url)
    # Any trial, whichever worker trained it, re-runs to the same accuracy.
    number = evaluated(study)[-1].number
    code, out, err = run_cli(capsys, "rerun", "--study", study.study_name, "--trial", str(number), "--storage",
                             postgres_url, "--json")
    assert code == 0 and json.loads(out)["identical"], err


# ---------------------------------------------------------------------------------------------- faults


def test_killed_worker_trial_is_retried_on_resume(capsys, tmp_path):
    """SIGKILL mid-trial: the trial fails by its heartbeat, the resumed run retries it first (same
    architecture and seed), finished trials stay, and the total is exact."""
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "killed"
    command = search_command(storage, name, "--epochs", "4", "--trials", "4", "--sampler", "random")
    worker = start_worker(command, tmp_path)
    wait_until(lambda: len([trial for trial in load(storage, name).get_trials()
                            if trial.state is optuna.trial.TrialState.COMPLETE]) >= 1)
    victim = wait_until(training_trials(storage, name))[0]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    before = load(storage, name).get_trials()
    complete_before = {trial.number: trial.values for trial in before if trial.state.name == "COMPLETE"}
    stranded = [trial for trial in before if trial.state is optuna.trial.TrialState.RUNNING]
    assert [trial.number for trial in stranded] == [victim.number]

    finish([start_worker(command, tmp_path)])
    study = load(storage, name)
    check_exact_total(study, 4)
    trials = study.get_trials()
    assert states(study) == {"COMPLETE": 4, "FAIL": 1}
    assert trials[victim.number].state is optuna.trial.TrialState.FAIL
    retries = [trial for trial in trials if ATTR_RETRIED_FROM in trial.user_attrs]
    assert len(retries) == 1 and retries[0].user_attrs[ATTR_RETRIED_FROM] == victim.number
    assert retries[0].state is optuna.trial.TrialState.COMPLETE
    assert retries[0].params == victim.params and retries[0].user_attrs[ATTR_SEED] == victim.user_attrs[ATTR_SEED]
    assert all(trials[number].values == values for number, values in complete_before.items())
    assert best_rows(capsys, storage, name)


@pytest.mark.slow
@pytest.mark.services
def test_killed_worker_trial_is_retried_by_another_worker(tmp_path, postgres_url):
    name = unique_name("takeover")
    command = search_command(postgres_url, name, "--epochs", "4", "--trials", "6", "--sampler", "random")
    workers = [start_worker(command, tmp_path) for _ in range(2)]
    victim = wait_until(training_trials(postgres_url, name))[0]
    victim_worker = next(worker for worker in workers if victim.user_attrs[ATTR_WORKER].endswith(f":{worker.pid}"))
    os.killpg(victim_worker.pid, signal.SIGKILL)
    victim_worker.wait()
    finish([worker for worker in workers if worker is not victim_worker])
    study = load(postgres_url, name)
    check_exact_total(study, 6)
    retries = [trial for trial in study.get_trials() if trial.user_attrs.get(ATTR_RETRIED_FROM) == victim.number]
    assert len(retries) == 1 and retries[0].state is optuna.trial.TrialState.COMPLETE
    assert study.get_trials()[victim.number].state is optuna.trial.TrialState.FAIL


def test_sigterm_fails_and_queues_the_running_trial(tmp_path):
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "terminated"
    command = search_command(storage, name, "--epochs", "4", "--trials", "3", "--sampler", "random")
    worker = start_worker(command, tmp_path)
    victim = wait_until(training_trials(storage, name))[0]
    os.killpg(worker.pid, signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130
    assert err.strip().splitlines()[-1].startswith("nasscale: interrupted; finished trials are kept")
    assert "Traceback" not in err
    trials = load(storage, name).get_trials()
    interrupted = trials[victim.number]
    assert interrupted.state is optuna.trial.TrialState.FAIL and interrupted.user_attrs[ATTR_INTERRUPTED]
    assert interrupted.user_attrs[ATTR_FAIL_REASON] == "interrupted (signal 15); queued again"
    queued = trials[-1]
    assert queued.state is optuna.trial.TrialState.WAITING and queued.user_attrs[ATTR_RETRIED_FROM] == victim.number

    finish([start_worker(command, tmp_path)])
    study = load(storage, name)
    check_exact_total(study, 3)
    assert study.get_trials()[queued.number].state is optuna.trial.TrialState.COMPLETE
    assert study.get_trials()[queued.number].params == victim.params


# -------------------------------------------------------------------------------------------------- Ray


def trial_intervals(study: optuna.Study) -> list[tuple[float, float, str]]:
    return sorted((trial.user_attrs[ATTR_STARTED_AT], trial.user_attrs[ATTR_FINISHED_AT],
                   trial.user_attrs[ATTR_WORKER]) for trial in evaluated(study))


def overlap_seconds(intervals: list[tuple[float, float, str]]) -> float:
    """Seconds during which trials of two different workers trained at the same time."""
    total = 0.0
    for index, (start, end, worker) in enumerate(intervals):
        for other_start, other_end, other_worker in intervals[index + 1:]:
            if other_worker != worker:
                total += max(0.0, min(end, other_end) - max(start, other_start))
    return total


@pytest.mark.services
def test_ray_two_node_cluster_runs_two_trials_at_once(capsys, tmp_path, ray_address):
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "ray"
    command = search_command(storage, name, "--epochs", "3", "--trials", "6", "--sampler", "random", "--backend",
                             "ray", "--ray-address", ray_address, "--workers", "2", "--json")
    finish([start_worker(command, tmp_path, stdout=subprocess.PIPE)])
    study = load(storage, name)
    done = check_exact_total(study, 6)
    nodes = {trial.user_attrs[ATTR_WORKER].split(" ray node ")[1] for trial in done}
    assert len(nodes) == 2, "each of the two nodes (one CPU each) should have run one worker"
    intervals = trial_intervals(study)
    busy = sum(end - start for start, end, _ in intervals)
    # Measured, not assumed: the two workers' trials overlap for a good part of the time.
    assert overlap_seconds(intervals) > 0.2 * busy / 2, intervals
    # Several objectives: no early stopping, and nothing failed or retried.
    skipped = [trial for trial in study.get_trials() if ATTR_SKIPPED in trial.user_attrs]
    assert states(study) == {"COMPLETE": 6} | ({"PRUNED": len(skipped)} if skipped else {})
    assert not [trial for trial in study.get_trials() if ATTR_RETRIED_FROM in trial.user_attrs]
    assert not [trial for trial in done if "completed_rung_0" in trial.system_attrs]
    assert study.user_attrs["nasscale_config"]["backend"] == "ray"
    # The commands that read a study read this one as any other.
    assert {row["trial"] for row in best_rows(capsys, storage, name)} <= {trial.number for trial in done}
    code, out, err = run_cli(capsys, "report", "--study", name, "--storage", storage, "--out",
                             str(tmp_path / "report.html"), "--json")
    assert code == 0, err
    assert json.loads(out)["studies"][0]["trained"] == 6 and (tmp_path / "report.html").stat().st_size > 0


def test_ray_local_runtime_stops_single_objective_trials_with_asha(capsys, tmp_path):
    """No --ray-address: a local Ray runtime. A single objective (the MnasNet reward): ASHA ranks every trial after
    its first epoch and stops those below the top third of their rung; the first trial has no peers and goes on.
    One worker, a fixed seed: the counts are exact."""
    pytest.importorskip("ray")
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "asha"
    command = search_command(storage, name, "--epochs", "2", "--trials", "5", "--sampler", "random", "--seed", "0",
                             "--reward", "mnas", "--target-macs", "1M", "--backend", "ray", "--workers", "1")
    finish([start_worker(command, tmp_path)])
    study = load(storage, name)
    check_exact_total(study, 5)
    assert states(study) == {"COMPLETE": 3, "PRUNED": 2}
    trials = study.get_trials()
    assert all("completed_rung_0" in trial.system_attrs for trial in trials)
    complete = [trial for trial in trials if trial.state is optuna.trial.TrialState.COMPLETE]
    stopped = [trial for trial in trials if trial.state is optuna.trial.TrialState.PRUNED]
    assert trials[0] in complete and all(sorted(trial.intermediate_values) == [1, 2] for trial in complete)
    assert all(sorted(trial.intermediate_values) == [1] for trial in stopped)  # stopped after epoch 1 of 2
    best = max(complete, key=lambda trial: trial.value)
    assert [row["trial"] for row in best_rows(capsys, storage, name)][0] == best.number
    # A stopped trial re-runs too: its one recorded epoch is repeated exactly.
    code, out, err = run_cli(capsys, "rerun", "--study", name, "--trial", str(stopped[0].number), "--storage",
                             storage, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["identical"] and result["epochs"][0]["recorded"] == stopped[0].intermediate_values[1]


@pytest.mark.slow
@pytest.mark.services
def test_ray_one_worker_repeats_the_optuna_backend_sequence(capsys, tmp_path, ray_address):
    """With a fixed seed and one worker, the Ray backend proposes what the Optuna backend proposes."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["--trials", "3", "--sampler", "random", "--seed", "5"]
    for name in ("ray-a", "ray-b"):
        command = search_command(storage, name, *common, "--backend", "ray", "--ray-address", ray_address)
        finish([start_worker(command, tmp_path)])
    code, _, err = run_cli(capsys, "search", *FAST, *common, "--storage", storage, "--study", "optuna")
    assert code == 0, err
    sequences = [[trial.user_attrs[ATTR_ARCH_ID] for trial in load(storage, name).get_trials()]
                 for name in ("ray-a", "ray-b", "optuna")]
    assert sequences[0] == sequences[1] == sequences[2] and len(sequences[0]) == 3


@pytest.mark.slow
@pytest.mark.services
def test_ray_killed_actor_trial_is_retried_by_the_workers(tmp_path, ray_address):
    """SIGKILL on the actor training a trial: Ray restarts the actor, the trial fails by its heartbeat and is
    retried with its architecture and seed, and the run ends with the exact total."""
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "ray-killed"
    command = search_command(storage, name, "--epochs", "6", "--trials", "6", "--sampler", "random", "--backend",
                             "ray", "--ray-address", ray_address, "--workers", "2")
    driver = start_worker(command, tmp_path)
    victim = wait_until(training_trials(storage, name))[0]
    os.kill(int(victim.user_attrs[ATTR_WORKER].split(" ")[0].rpartition(":")[2]), signal.SIGKILL)
    finish([driver])
    study = load(storage, name)
    check_exact_total(study, 6)
    trials = study.get_trials()
    assert trials[victim.number].state is optuna.trial.TrialState.FAIL
    assert ATTR_FAIL_REASON not in trials[victim.number].user_attrs  # killed: no reason of its own, so retried
    retries = [trial for trial in trials if ATTR_RETRIED_FROM in trial.user_attrs]
    assert [trial.user_attrs[ATTR_RETRIED_FROM] for trial in retries] == [victim.number]
    assert retries[0].state is optuna.trial.TrialState.COMPLETE and retries[0].params == victim.params
    assert retries[0].user_attrs[ATTR_SEED] == victim.user_attrs[ATTR_SEED]


@pytest.mark.slow
@pytest.mark.services
def test_ray_driver_stops_cleanly_on_sigterm_and_resumes(tmp_path, ray_address):
    """SIGTERM to the driver (ray.init() would make it exit at once): the actors fail and queue their trials,
    the command ends with status 130 and one line, and the same command resumes to the exact total."""
    storage, name = f"sqlite:///{tmp_path / 'study.db'}", "ray-terminated"
    command = search_command(storage, name, "--epochs", "6", "--trials", "6", "--sampler", "random", "--backend",
                             "ray", "--ray-address", ray_address, "--workers", "2")
    driver = start_worker(command, tmp_path)
    wait_until(training_trials(storage, name))
    os.kill(driver.pid, signal.SIGTERM)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("nasscale: interrupted; finished trials are kept")
    assert "Traceback" not in err
    trials = load(storage, name).get_trials()
    interrupted = [trial for trial in trials if trial.user_attrs.get(ATTR_INTERRUPTED)]
    queued = [trial for trial in trials if trial.state is optuna.trial.TrialState.WAITING]
    assert interrupted and all(trial.state is optuna.trial.TrialState.FAIL for trial in interrupted)
    assert sorted(trial.user_attrs[ATTR_RETRIED_FROM] for trial in queued) == [trial.number for trial in interrupted]
    assert not [trial for trial in trials if trial.state is optuna.trial.TrialState.RUNNING]

    finish([start_worker(command, tmp_path)])
    study = load(storage, name)
    check_exact_total(study, 6)
    assert all(study.get_trials()[trial.number].state is optuna.trial.TrialState.COMPLETE for trial in queued)
