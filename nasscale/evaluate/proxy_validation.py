"""Do the zero-cost proxies rank architectures the way training does? Sample architectures, train each with the
search's proxy training, score each with every proxy and baseline, and report the rank correlations (Spearman's
rho and Kendall's tau) of each score against the trained accuracy.

Each architecture gets the seed ``seed + index``, as a search trial gets ``seed + trial number``; its proxies are
scored with that seed too, so they see exactly the initial weights its training starts from. The proxy batch is
one stratified batch of training images, resized to the training resolution as training resizes them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from nasscale.errors import NasscaleError, SpecError, TrainingDiverged
from nasscale.evaluate.data import Dataset, DataSource, load_splits, stratified_indices
from nasscale.evaluate.settings import TrainSettings
from nasscale.space.model import SearchSpace
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.serialization import summary

logger = logging.getLogger(__name__)

DEFAULT_PROXY_BATCH = 64


@dataclass(frozen=True, slots=True)
class ArchitectureRecord:
    index: int
    arch_id: str
    summary: str
    seed: int
    accuracy: float | None  # None when training diverged
    train_seconds: float
    scores: dict[str, float | None]  # None when the proxy failed on this architecture
    score_seconds: dict[str, float]
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class Correlation:
    proxy: str
    baseline: bool  # params and macs: analytic cost, what a proxy has to beat
    spearman_rho: float
    spearman_p: float
    kendall_tau: float
    kendall_p: float
    architectures: int  # with both a trained accuracy and a score
    mean_seconds: float  # per architecture


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyValidation:
    space: str
    data: str
    architectures: int
    epochs: int
    seed: int
    proxy_resolution: int | None
    max_train_samples: int | None
    max_validation_samples: int | None
    proxy_batch_size: int
    threads: int
    records: tuple[ArchitectureRecord, ...]
    correlations: tuple[Correlation, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in ("records",
                                                                                                  "correlations")}
        data["correlations"] = [_finite_or_none(asdict(correlation)) for correlation in self.correlations]
        data["records"] = [asdict(record) for record in self.records]
        return data


def _finite_or_none(row: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN: a correlation of a constant score is undefined and written as null.
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value for key, value in row.items()}


def validate_proxies(space: SearchSpace | str, data: str | DataSource | tuple[Dataset, Dataset], *, n: int = 50,
                     epochs: int = 3, seed: int = 0, proxy_resolution: int | None = 32,
                     max_train_samples: int | None = None, max_validation_samples: int | None = None,
                     threads: int = 1, proxies: tuple[str, ...] | None = None,
                     proxy_batch_size: int = DEFAULT_PROXY_BATCH,
                     on_progress: Callable[[int, int, ArchitectureRecord], None] | None = None) -> ProxyValidation:
    """Sample ``n`` architectures of ``space``, proxy-train and score each; correlate every score with accuracy.

    ``data`` is a source (``"fashion-mnist"``) loaded with ``max_train_samples`` and ``max_validation_samples``
    (stratified subsets: scoring 10,000 test images every epoch can cost more than the training), or a
    (train, validation) pair.
    ``proxies`` names a subset of ``zero_cost.PROXIES`` (default: all). ``on_progress(done, n, record)`` runs after
    each architecture."""
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.zero_cost import PROXIES, proxy_names
    names = proxy_names(",".join(proxies)) if proxies else tuple(PROXIES)
    for name, value in (("n", n), ("proxy_batch_size", proxy_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise SpecError(name, f"must be an integer of at least 2, got {value!r}")
    started = time.perf_counter()
    search_space = load_space(space) if isinstance(space, str) else space
    train, validation = _splits(data, seed=seed, max_train_samples=max_train_samples,
                                max_validation_samples=max_validation_samples)
    batch = proxy_batch(train, proxy_batch_size, resolution=proxy_resolution, seed=seed)
    chooser = RandomChooser(seed)
    archs = [sample(search_space, chooser, in_channels=train.in_channels, num_classes=train.num_classes)
             for _ in range(n)]
    records = []
    for index, arch in enumerate(archs):
        record = _evaluate_one(index, arch, train, validation, batch, names, epochs=epochs, seed=seed + index,
                               proxy_resolution=proxy_resolution, threads=threads)
        records.append(record)
        logger.info("architecture %d/%d %s: accuracy %s", index + 1, n, record.arch_id, record.accuracy)
        if on_progress is not None:
            on_progress(index + 1, n, record)
    return ProxyValidation(space=search_space.name, data=_data_name(data, train), architectures=n, epochs=epochs,
                           seed=seed, proxy_resolution=proxy_resolution, max_train_samples=max_train_samples,
                           max_validation_samples=max_validation_samples, proxy_batch_size=len(batch[0]),
                           threads=threads, records=tuple(records), correlations=tuple(correlate(records, names)),
                           seconds=time.perf_counter() - started)


def _splits(data: str | DataSource | tuple[Dataset, Dataset], *, seed: int, max_train_samples: int | None,
            max_validation_samples: int | None) -> tuple[Dataset, Dataset]:
    if isinstance(data, tuple):
        return data
    return load_splits(data, split_seed=seed, max_train_samples=max_train_samples,
                       max_validation_samples=max_validation_samples)


def _data_name(data: Any, train: Dataset) -> str:
    return train.name if isinstance(data, tuple) else str(data)


def proxy_batch(train: Dataset, size: int, *, resolution: int | None, seed: int) -> tuple[Any, Any]:
    """A stratified batch of training images, resized as proxy training resizes them (bilinear, antialiased when
    shrinking)."""
    import torch
    import torch.nn.functional as F

    indices = stratified_indices(train.labels, min(size, len(train)), seed=seed)
    images = torch.from_numpy(train.images[indices].copy())
    if resolution is not None and tuple(images.shape[-2:]) != (resolution, resolution):
        shrinking = resolution < max(images.shape[-2:])
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                               antialias=shrinking)
    return images, torch.from_numpy(train.labels[indices].copy())


def _evaluate_one(index: int, arch: Any, train: Dataset, validation: Dataset, batch: tuple[Any, Any],
                  names: tuple[str, ...], *, epochs: int, seed: int, proxy_resolution: int | None,
                  threads: int) -> ArchitectureRecord:
    scores, seconds = _score_all(arch, batch, names, seed=seed, threads=threads)
    accuracy, train_seconds, failure = _train(arch, train, validation, epochs=epochs, seed=seed,
                                              proxy_resolution=proxy_resolution, threads=threads)
    return ArchitectureRecord(index, arch.arch_id, summary(arch), seed, accuracy, train_seconds, scores, seconds,
                              failure)


def _score_all(arch: Any, batch: tuple[Any, Any], names: tuple[str, ...], *, seed: int,
               threads: int) -> tuple[dict[str, float | None], dict[str, float]]:
    import torch

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.zero_cost import score

    scores: dict[str, float | None] = {}
    seconds: dict[str, float] = {}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in names:
            started = time.perf_counter()
            try:
                scores[name] = score(name, arch, batch, seed=seed)
            except NasscaleError as error:
                logger.warning("%s failed on %s: %s", name, arch.arch_id, error)
                scores[name] = None
            seconds[name] = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous_threads)
    return scores, seconds


def _train(arch: Any, train: Dataset, validation: Dataset, *, epochs: int, seed: int, proxy_resolution: int | None,
           threads: int) -> tuple[float | None, float, str | None]:
    """The search's own proxy training: the recipe (``TrainSettings``) with these epochs, resolution, threads."""
    import torch

    # torch: imported where needed, so this module loads without it
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.training import train_model
    from nasscale.models.build import build

    settings = TrainSettings(epochs=epochs, resolution=proxy_resolution, threads=threads, seed=seed)
    started = time.perf_counter()
    torch.manual_seed(seed)  # the initial weights the proxies scored
    model = build(arch)
    try:
        result = train_model(model, train, validation, settings)
    except TrainingDiverged as error:
        return None, time.perf_counter() - started, str(error)
    return result.validation_accuracy, time.perf_counter() - started, None


def correlate(records: list[ArchitectureRecord], names: tuple[str, ...]) -> list[Correlation]:
    """Spearman's rho and Kendall's tau of each score against accuracy, over the architectures that have both."""
    from scipy import stats

    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.zero_cost import BASELINES

    rows = []
    for name in names:
        pairs = [(record.scores[name], record.accuracy) for record in records
                 if record.accuracy is not None and record.scores.get(name) is not None]
        mean_seconds = sum(record.score_seconds[name] for record in records) / max(len(records), 1)
        rho = rho_p = tau = tau_p = math.nan
        if len(pairs) >= 3:
            scores, accuracies = zip(*pairs, strict=True)
            rho, rho_p = _pair(stats.spearmanr(scores, accuracies))
            tau, tau_p = _pair(stats.kendalltau(scores, accuracies))
        rows.append(Correlation(name, name in BASELINES, rho, rho_p, tau, tau_p, len(pairs), mean_seconds))
    return rows


def _pair(result: Any) -> tuple[float, float]:
    return float(result.statistic), float(result.pvalue)
