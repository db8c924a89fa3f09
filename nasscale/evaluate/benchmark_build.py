"""Building a benchmark table (``nasscale bench build``): train every architecture of a space once, with one
fixed recipe, on the protocol's splits, and store what ``nasscale.evaluate.benchmark_table`` reads.

A small space (up to ``ENUMERATION_LIMIT`` architectures, ``tiny``'s 2,048 among them) is enumerated
completely; a bigger one needs ``sample``: that many distinct architectures drawn by a seeded random chooser.
Every architecture trains from the same seed, at its own (deployment) resolution, for ``epochs`` epochs, is
scored on the validation split after every epoch and once on the test set at the end.

Resumable: rows are written as they finish (one transaction each), and a build that finds its file already
holding rows checks that they were made with the same settings and trains only the rest. Parallel: ``workers``
processes (spawned, each with one torch thread) train while the parent writes; killing the parent loses only
the architectures in flight.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from nasscale.errors import SpecError
from nasscale.evaluate.benchmark_table import (
    TABLE_FORMAT,
    BenchmarkError,
    BenchmarkRow,
    BuildRequest,
    EpochPoint,
    finished_ids,
    open_table_file,
    read_meta,
    write_meta,
    write_rows,
)
from nasscale.evaluate.data import Dataset, load_splits, load_test_set, native_resolution, split_record
from nasscale.evaluate.proxy_validation import proxy_batch
from nasscale.space.deployment import at_resolution
from nasscale.space.extent import space_size
from nasscale.space.model import SearchSpace
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, enumerate_space, sample
from nasscale.spec.arch import Arch, to_dict
from nasscale.spec.cost import cost
from nasscale.spec.serialization import from_dict

ENUMERATION_LIMIT = 5_000  # spaces up to this size are listed whole; bigger ones are sampled
PROXY_BATCH_SIZE = 64  # as the search's zero-cost evaluator scores
LATENCY_REPEATS = 10
MAX_SAMPLE_DRAWS = 50  # draws per wanted architecture before a sample of a small space gives up


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """What a build will do, decided before anything trains."""

    space: SearchSpace  # deployed at ``resolution``
    resolution: int
    archs: tuple[Arch, ...]
    meta: dict[str, Any]
    done: frozenset[str]  # arch ids already in the file

    @property
    def remaining(self) -> list[Arch]:
        return [arch for arch in self.archs if arch.arch_id not in self.done]


def plan_build(request: BuildRequest) -> BuildPlan:
    """Load the space and data, list the architectures and check an existing file: every bad input fails here."""
    train, validation = _splits(request)
    resolution = request.resolution or native_resolution(train)
    space = at_resolution(load_space(request.space), resolution)
    archs = tuple(_architectures(space, request, train.in_channels, train.num_classes))
    meta = {"format": TABLE_FORMAT, "space": space.name, "space_definition": space.to_dict(), "data": request.data,
            "resolution": resolution, "recipe": request.recipe(), "architectures": len(archs),
            "selection": "enumerated" if request.sample is None else f"sample of {request.sample}, seed "
                                                                     f"{request.seed}",
            "splits": split_record(request.data, train, validation, validation_fraction=request.validation_fraction,
                                   test_fraction=request.test_fraction, split_seed=request.split_seed),
            "latency": f"batch 1, 1 thread, fastest of {LATENCY_REPEATS} runs, measured with {request.workers} "
                       "builders on the machine", "software": software_versions()}
    connection = open_table_file(request.out, create=True)
    try:
        done = finished_ids(connection)
        if done:
            _check_same_build(read_meta(connection, request.out), meta, request.out)
        write_meta(connection, meta | {"created_at": datetime.now(UTC).isoformat(timespec="seconds")}
                   if not done else {"resumed_at": datetime.now(UTC).isoformat(timespec="seconds")})
    finally:
        connection.close()
    return BuildPlan(space, resolution, archs, meta, frozenset(done))


def build_table(request: BuildRequest, plan: BuildPlan,
                on_row: Callable[[int, int, BenchmarkRow], None] | None = None) -> int:
    """Train the plan's remaining architectures and write each row as it finishes; returns how many it wrote."""
    remaining = plan.remaining
    connection = open_table_file(request.out, create=True)
    written = 0
    try:
        for row in _train_all(request, remaining):
            write_rows(connection, [row])
            written += 1
            if on_row is not None:
                on_row(len(plan.done) + written, len(plan.archs), row)
    finally:
        connection.close()
    return written


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("nasscale", "torch", "numpy", "optuna"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _splits(request: BuildRequest) -> tuple[Dataset, Dataset]:
    return load_splits(request.data, validation_fraction=request.validation_fraction,
                       test_fraction=request.test_fraction, split_seed=request.split_seed,
                       max_train_samples=request.max_train_samples,
                       max_validation_samples=request.max_validation_samples)


def _architectures(space: SearchSpace, request: BuildRequest, in_channels: int, num_classes: int) -> Iterator[Arch]:
    size = space_size(space)
    if request.sample is None:
        if size > ENUMERATION_LIMIT:
            raise SpecError("sample", f"space {space.name!r} holds {size:,} architectures, more than the "
                                      f"{ENUMERATION_LIMIT:,} a table lists whole; give --sample N to train N of them")
        yield from enumerate_space(space, in_channels=in_channels, num_classes=num_classes)
        return
    if request.sample > size:
        raise SpecError("sample", f"space {space.name!r} holds {size:,} architectures, fewer than --sample "
                                  f"{request.sample}; leave --sample out to enumerate it")
    chooser, seen = RandomChooser(request.seed), set()
    for _ in range(request.sample * MAX_SAMPLE_DRAWS):
        arch = sample(space, chooser, in_channels=in_channels, num_classes=num_classes)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            yield arch
            if len(seen) == request.sample:
                return


def _check_same_build(recorded: dict[str, Any], meta: dict[str, Any], path: Path) -> None:
    for key in ("space_definition", "data", "resolution", "recipe", "architectures", "selection", "splits"):
        if recorded.get(key) != meta[key]:
            raise BenchmarkError(f"{path}: holds rows built with another {key.replace('_', ' ')} "
                                 f"({_difference(recorded.get(key), meta[key])}); resume it with the same "
                                 "settings, or write a new table with another --out")


def _difference(recorded: Any, asked: Any) -> str:
    """What differs, field by field for two records ("epochs 4 in the file, 3 asked")."""
    if isinstance(recorded, dict) and isinstance(asked, dict):
        keys = [key for key in sorted(set(recorded) | set(asked)) if recorded.get(key) != asked.get(key)]
        return ", ".join(f"{key} {_short(recorded.get(key))} in the file, {_short(asked.get(key))} asked"
                         for key in keys[:3])
    return f"{_short(recorded)} in the file, {_short(asked)} asked"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------------ training


def _train_all(request: BuildRequest, archs: list[Arch]) -> Iterator[BenchmarkRow]:
    if request.workers == 1:
        _start_worker(request)
        for arch in archs:
            yield _train_one(to_dict(arch))
        return
    context = get_context("spawn")  # torch and forked threads do not mix
    with ProcessPoolExecutor(request.workers, mp_context=context, initializer=_start_worker,
                             initargs=(request,)) as pool:
        pending: set[Future[BenchmarkRow]] = set()
        queue = iter(archs)
        for arch in queue:
            pending.add(pool.submit(_train_one, to_dict(arch)))
            if len(pending) >= 2 * request.workers:
                break
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield future.result()
                following = next(queue, None)
                if following is not None:
                    pending.add(pool.submit(_train_one, to_dict(following)))


_WORKER: dict[str, Any] = {}  # per builder process: the data and settings, loaded once


def _start_worker(request: BuildRequest) -> None:
    import torch

    torch.set_num_threads(1)
    train, validation = _splits(request)
    test = load_test_set(request.data, test_fraction=request.test_fraction, split_seed=request.split_seed,
                         max_samples=request.max_test_samples)
    _WORKER.update(request=request, train=train, validation=validation, test=test, batches={})


def _train_one(arch_data: dict[str, Any]) -> BenchmarkRow:
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.latency import measure_arch_latency
    from nasscale.evaluate.training import evaluate_model, train_model
    from nasscale.models.build import build

    request: BuildRequest = _WORKER["request"]
    arch = from_dict(arch_data)
    settings = dataclasses.replace(request.settings(), resolution=arch.resolution)
    proxies = _proxy_scores(arch, request.seed) if request.proxies else {}
    started = time.perf_counter()
    torch.manual_seed(request.seed)
    model = build(arch)
    result = train_model(model, _WORKER["train"], _WORKER["validation"], settings)
    seconds = time.perf_counter() - started
    test_accuracy, _ = evaluate_model(model, _WORKER["test"], settings)
    latency = measure_arch_latency(arch, threads=1, repeats=LATENCY_REPEATS).min_ms
    total = cost(arch)
    curve = tuple(EpochPoint(record.epoch, record.validation_accuracy, record.validation_loss, record.train_loss)
                  for record in result.history)
    return BenchmarkRow(arch.arch_id, to_dict(arch), total.params, total.macs, latency, curve, test_accuracy,
                        seconds, proxies)


def _proxy_scores(arch: Arch, seed: int) -> dict[str, float | None]:
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.zero_cost import PROXIES, ProxyError, score

    batches = _WORKER["batches"]  # one proxy batch per resolution, resized as training resizes
    if arch.resolution not in batches:
        batches[arch.resolution] = proxy_batch(_WORKER["train"], PROXY_BATCH_SIZE, resolution=arch.resolution,
                                               seed=seed)
    batch = batches[arch.resolution]
    scores: dict[str, float | None] = {}
    for name in PROXIES:
        try:
            scores[name] = score(name, arch, batch, seed=seed)
        except ProxyError:
            scores[name] = None
    return scores
