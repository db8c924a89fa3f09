"""Optuna storages: URLs (``sqlite:///``, ``postgresql://``, ``journal:FILE``) to storages with heartbeats,
one-line errors for an unreachable or misspelt one, the file and advisory locks that share a study's trial
slots between workers, and ``require_existing_storage`` for commands that must not create an empty one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages._heartbeat import BaseHeartbeat  # the RDB storage's heartbeat interface, not re-exported
from optuna.trial import TrialState

from nasscale.errors import UnknownNameError, first_line
from nasscale.search.objective import (
    SearchError,
)
from nasscale.search.record import (
    SYSTEM_ATTR_HEARTBEAT,
)
from nasscale.search.trials import retry_stale_trial

# A killed worker's RUNNING trial is failed once its heartbeat is this old (see fail_stale_trials).
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 30
HEARTBEAT_VARIABLE = "NASSCALE_HEARTBEAT_SECONDS"
GRACE_VARIABLE = "NASSCALE_GRACE_SECONDS"
SLOT_LOCK_SUFFIX = ".nasscale-slots"


# --------------------------------------------------------------------------------------------- storage


def quiet_optuna() -> None:
    """For a process that runs or reads studies (the CLI, a Ray worker): failed trials are reported by nasscale
    with their reason, where Optuna would add a log line and a traceback per trial; and heartbeats, our crash
    detection, are stable since Optuna 2.9 though marked experimental. A library import changes neither."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


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


URL_FORMS = "sqlite:///FILE, postgresql://USER:PASSWORD@HOST/DATABASE or journal:FILE"
SQLITE_HEADER = b"SQLite format 3\x00"


def make_storage(url: str, *, for_search: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage from a URL, with heartbeats; ``journal:PATH`` selects the journal file storage. Search
    workers (``for_search``) take turns creating a new database's tables; readers take no lock, so they leave no
    lock file beside the database."""
    interval, grace = heartbeat_settings()
    if not url.startswith("journal:"):
        parsed_url(url)
    require_folder(url)
    require_database_file(url)
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
        with schema_lock(url, engine_kwargs) if for_search else contextlib.nullcontext():
            return optuna.storages.RDBStorage(database_url(url), engine_kwargs=engine_kwargs,
                                              heartbeat_interval=interval, grace_period=grace,
                                              heartbeat_stale_trial_callback=retry_stale_trial)
    except ImportError as error:
        hint = "; pip install psycopg2-binary" if url.startswith("postgresql") else ""
        raise SearchError(f"storage {url!r}: {first_line(error)}{hint}") from None
    except ValueError as error:
        raise SearchError(f"storage {url!r}: {first_line(error)}") from None
    except Exception as error:  # sqlalchemy's OperationalError and friends: unreachable or refused
        raise SearchError(f"storage {url!r} is unreachable: {first_line(error)}") from None


def require_folder(url: str) -> None:
    """A SQLite or journal file is created on first use, but its folder is not."""
    path = url.removeprefix("journal:") if url.startswith("journal:") else sqlite_path(url)
    if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(os.path.expanduser(path)))):
        raise SearchError(f"storage {url!r}: the folder {os.path.dirname(path) or '.'} does not exist; create it "
                          "or fix the path")


def require_database_file(url: str) -> None:
    """A file given as SQLite storage by mistake (a text file) would be reported as "file is not a database"."""
    path = sqlite_path(url)
    if path is None or not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb") as file:
        if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise SearchError(f"storage {url!r}: {path} is not a SQLite database; check --storage")


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


def parsed_url(url: str) -> Any:
    """SQLAlchemy's reading of a database URL, or one line naming the forms it takes."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise SearchError(f"storage {url!r} is not a storage URL; write {URL_FORMS}") from None


def sqlite_path(url: str) -> str | None:
    """The database file of a sqlite URL; None for other URLs and in-memory databases."""
    if not url.startswith("sqlite"):
        return None
    database = parsed_url(url).database
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
    database_path = sqlite_path(url)
    if database_path is not None:
        return lambda: file_lock(database_path + SLOT_LOCK_SUFFIX)
    if url.startswith("postgresql"):
        engine = storage.engine  # type: ignore[attr-defined]
        return lambda: advisory_lock(engine, f"nasscale:{study_name}")
    return contextlib.nullcontext  # one process, or a database without a lock here: see the module docstring


def require_existing_storage(url: str) -> None:
    """SQLAlchemy would create a missing SQLite file (an empty storage); a mistyped path should fail instead."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) not in ("", ":memory:") and not path.is_file():
            raise UnknownNameError(f"storage {url!r}: no such file {path}; check --storage")
    elif url.startswith("journal:") and not Path(url.removeprefix("journal:")).is_file():
        raise UnknownNameError(f"storage {url!r}: no such journal file; check --storage")
