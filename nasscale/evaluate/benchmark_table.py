"""A tabular NAS benchmark of one space on one dataset (``nasscale bench``): every architecture trained once
with one fixed recipe, in one SQLite file, the NAS-Bench-201 idea for any nasscale space and data.

The file holds two tables. ``meta`` (key, JSON value): the format, the space's definition as deployed, the
data and its split record, the deployment resolution, the recipe, the seeds, the software versions and how
many architectures the space holds. ``architectures``, one row per architecture: canonical ``arch_id`` and
spec, params and MACs at the deployment resolution, measured CPU latency, the learning curve (validation
accuracy and loss, training loss, after every epoch), the test accuracy after the last epoch (final
evaluation's number, never used to choose) and the training seconds.

``BenchmarkTable.answer`` is the tabular evaluator: the validation accuracy an architecture reaches after a
given number of epochs, and the seconds the real trial would have spent training that long.

Light: sqlite3 and json only, so a search answered from a table never imports torch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError
from nasscale.evaluate.settings import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    RECIPE_DEFAULTS,
    TrainSettings,
)

TABLE_FORMAT = 1
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS architectures (arch_id TEXT PRIMARY KEY, arch TEXT NOT NULL, params INTEGER NOT "
    "NULL, macs INTEGER NOT NULL, latency_ms REAL, curve TEXT NOT NULL, test_accuracy REAL NOT NULL, "
    "train_seconds REAL NOT NULL, proxies TEXT NOT NULL)",
)
REQUIRED_META = ("format", "space", "space_definition", "data", "resolution", "recipe", "architectures")


class BenchmarkError(NasscaleError):
    """A benchmark table that is missing, truncated, corrupted, or built for another space, data or recipe."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    space: str
    data: str = "fashion-mnist"
    out: Path
    resolution: int | None = None  # default: the data's native size
    epochs: int = 4
    batch_size: int = RECIPE_DEFAULTS.batch_size
    learning_rate: float = RECIPE_DEFAULTS.learning_rate
    optimizer: str = RECIPE_DEFAULTS.optimizer
    schedule: str = RECIPE_DEFAULTS.schedule
    label_smoothing: float = RECIPE_DEFAULTS.label_smoothing
    max_train_samples: int | None = 3_000
    max_validation_samples: int | None = 2_000
    max_test_samples: int | None = None
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    test_fraction: float = DEFAULT_TEST_FRACTION
    split_seed: int = 0
    seed: int = 0  # every architecture's initial weights and batch order
    sample: int | None = None  # architectures to draw from a space too big to enumerate
    workers: int = 1
    proxies: bool = True  # score every zero-cost proxy too (the ground truth of their correlation)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(name, f"must be a positive integer, got {value!r}")
        for name in ("resolution", "max_train_samples", "max_validation_samples", "max_test_samples", "sample"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SpecError(name, f"must be a positive integer, got {value!r}")

    def settings(self) -> TrainSettings:
        return TrainSettings(epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                             optimizer=self.optimizer, schedule=self.schedule, label_smoothing=self.label_smoothing,
                             threads=1, seed=self.seed)

    def recipe(self) -> dict[str, Any]:
        """What the table's numbers depend on besides the architecture: a resumed build must match it."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "optimizer": self.optimizer, "schedule": self.schedule, "label_smoothing": self.label_smoothing,
                "weight_decay": RECIPE_DEFAULTS.weight_decay, "warmup_epochs": RECIPE_DEFAULTS.warmup_epochs,
                "max_train_samples": self.max_train_samples, "max_validation_samples": self.max_validation_samples,
                "max_test_samples": self.max_test_samples, "seed": self.seed, "threads": 1,
                "proxies": self.proxies}


@dataclass(frozen=True, slots=True)
class EpochPoint:
    epoch: int  # from 1
    validation_accuracy: float
    validation_loss: float
    train_loss: float


@dataclass(frozen=True, slots=True)
class BenchmarkRow:
    arch_id: str
    arch: dict[str, Any]  # nasscale.spec.arch.to_dict
    params: int
    macs: int
    latency_ms: float | None
    curve: tuple[EpochPoint, ...]
    test_accuracy: float
    train_seconds: float
    proxies: dict[str, float | None]  # zero-cost scores at initialisation, on the build's proxy batch

    @property
    def final_accuracy(self) -> float:
        return self.curve[-1].validation_accuracy

    def record(self) -> tuple[Any, ...]:
        curve = [[point.epoch, point.validation_accuracy, point.validation_loss, point.train_loss]
                 for point in self.curve]
        return (self.arch_id, json.dumps(self.arch, sort_keys=True), self.params, self.macs, self.latency_ms,
                json.dumps(curve), self.test_accuracy, self.train_seconds, json.dumps(self.proxies, sort_keys=True))


@dataclass(frozen=True, slots=True)
class TabularAnswer:
    validation_accuracy: float
    validation_loss: float
    epochs: int
    seconds: float  # what training this architecture for ``epochs`` epochs cost when the table was built


@dataclass(frozen=True, eq=False)
class BenchmarkTable:
    path: str
    meta: dict[str, Any]
    rows: dict[str, BenchmarkRow]

    @property
    def epochs(self) -> int:
        return int(self.meta["recipe"]["epochs"])

    @property
    def complete(self) -> bool:
        return len(self.rows) == int(self.meta["architectures"])

    def answer(self, arch_id: str, epochs: int | None = None) -> TabularAnswer:
        """The table's record of ``arch_id`` after ``epochs`` epochs (default: all it holds)."""
        epochs = self.epochs if epochs is None else epochs
        self.check_epochs(epochs)
        row = self.rows.get(arch_id)
        if row is None:
            raise BenchmarkError(f"{self.path}: architecture {arch_id} is not in the table ({len(self.rows)} of "
                                 f"space {self.meta['space']!r}); search exactly the space the table was built for")
        point = row.curve[epochs - 1]
        return TabularAnswer(point.validation_accuracy, point.validation_loss, epochs,
                             row.train_seconds * epochs / len(row.curve))

    def check_epochs(self, epochs: int) -> None:
        """Refuse an epoch budget the learning curves do not reach."""
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= self.epochs:
            raise BenchmarkError(f"{self.path}: the table holds learning curves of 1 to {self.epochs} epochs, not "
                                 f"{epochs!r}; ask for at most --epochs {self.epochs}")

    def check_fits(self, *, space_definition: dict[str, Any], data: str, resolution: int) -> None:
        """Refuse a search the table cannot answer: another space, data or deployment resolution."""
        built = {"space": self.meta["space_definition"], "data": self.meta["data"],
                 "resolution": self.meta["resolution"]}
        asked = {"space": space_definition, "data": data, "resolution": resolution}
        for key, value in built.items():
            if asked[key] != value:
                shown = self.meta["space"] if key == "space" else value
                wanted = space_definition.get("name") if key == "space" else asked[key]
                raise BenchmarkError(f"{self.path}: built for {key} {shown!r}, but the search uses {wanted!r}; "
                                     f"search with --space {self.meta['space']} --data {self.meta['data']} "
                                     f"--resolution {self.meta['resolution']}, or build a table for this search")
        if not self.complete:
            raise BenchmarkError(f"{self.path}: holds {len(self.rows)} of the space's {self.meta['architectures']} "
                                 "architectures; finish it with 'nasscale bench build' (it resumes) before searching")


def open_table_file(path: str | Path, *, create: bool = False) -> sqlite3.Connection:
    """A connection to a table file; refuses a file that is not a nasscale table (one line, not a traceback)."""
    file = Path(path)
    if not create and not file.is_file():
        raise BenchmarkError(f"{path}: no such benchmark table; build one with 'nasscale bench build'")
    try:
        connection = sqlite3.connect(file, timeout=60)
        for statement in SCHEMA if create else ():
            connection.execute(statement)
        connection.execute("SELECT count(*) FROM architectures").fetchone()
        connection.execute("SELECT count(*) FROM meta").fetchone()
    except sqlite3.DatabaseError as error:
        raise BenchmarkError(f"{path}: not a nasscale benchmark table ({error}); rebuild it with "
                             "'nasscale bench build'") from None
    return connection


def read_meta(connection: sqlite3.Connection, path: str | Path) -> dict[str, Any]:
    try:
        meta = {key: json.loads(value) for key, value in connection.execute("SELECT key, value FROM meta")}
    except (sqlite3.DatabaseError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"{path}: corrupted metadata ({error}); rebuild it with 'nasscale bench build'") from None
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise BenchmarkError(f"{path}: metadata lacks {', '.join(missing)}; not a complete nasscale benchmark "
                             "table, rebuild it with 'nasscale bench build'")
    if meta["format"] != TABLE_FORMAT:
        raise BenchmarkError(f"{path}: table format {meta['format']!r}, this nasscale reads format {TABLE_FORMAT}")
    return meta


def write_meta(connection: sqlite3.Connection, meta: dict[str, Any]) -> None:
    with connection:
        connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               [(key, json.dumps(value, sort_keys=True)) for key, value in meta.items()])


def write_rows(connection: sqlite3.Connection, rows: Iterable[BenchmarkRow]) -> None:
    with connection:  # one transaction: a kill loses the rows not yet written, never half a row
        connection.executemany("INSERT OR REPLACE INTO architectures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               [row.record() for row in rows])


def finished_ids(connection: sqlite3.Connection) -> set[str]:
    return {arch_id for (arch_id,) in connection.execute("SELECT arch_id FROM architectures")}


def load_table(path: str | Path) -> BenchmarkTable:
    """The whole table in memory (2,048 rows are a few MB), checked row by row."""
    connection = open_table_file(path)
    try:
        meta = read_meta(connection, path)
        records = connection.execute("SELECT * FROM architectures").fetchall()
    except sqlite3.DatabaseError as error:
        raise BenchmarkError(f"{path}: corrupted table ({error}); rebuild it with 'nasscale bench build'") from None
    finally:
        connection.close()
    rows = {}
    for record in records:
        row = _parse_row(record, path, int(meta["recipe"]["epochs"]))
        rows[row.arch_id] = row
    return BenchmarkTable(str(path), meta, rows)


def _parse_row(record: tuple[Any, ...], path: str | Path, epochs: int) -> BenchmarkRow:
    arch_id = record[0]
    try:
        curve = tuple(EpochPoint(int(epoch), float(accuracy), float(loss), float(train_loss))
                      for epoch, accuracy, loss, train_loss in json.loads(record[5]))
        row = BenchmarkRow(str(arch_id), json.loads(record[1]), int(record[2]), int(record[3]),
                           None if record[4] is None else float(record[4]), curve, float(record[6]),
                           float(record[7]), dict(json.loads(record[8])))
    except (TypeError, ValueError, IndexError) as error:
        raise BenchmarkError(f"{path}: corrupted row {arch_id!r} ({error}); rebuild it with "
                             "'nasscale bench build'") from None
    if [point.epoch for point in curve] != list(range(1, epochs + 1)):
        raise BenchmarkError(f"{path}: row {arch_id!r} holds epochs {[point.epoch for point in curve]}, the recipe "
                             f"{epochs}; rebuild it with 'nasscale bench build'")
    return row
