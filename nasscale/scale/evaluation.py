"""Proxy evaluation of scaled candidates for ``nasscale scale``: the search's trainer on the search's validation
split for choosing, and the ladder's final runs, the only place scaling reads the test set.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

from nasscale.errors import ScalingError, TrainingDiverged
from nasscale.evaluate.data import load_test_set, native_resolution
from nasscale.search.config import PROXY_SETTING_FIELDS, SearchConfig
from nasscale.search.objective import TEST_ACCURACY, SearchContext, load_search_splits, train_architecture
from nasscale.search.record import ATTR_ACCURACY
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.units import format_count


class ProxyEvaluator:
    """The search's proxy evaluator (``train_architecture``) for scaled candidates, on the search's validation
    split (never the test set).

    A candidate trains with the data's channels and classes at its own resolution, the one its MACs count at;
    with a ``proxy_resolution`` fidelity, at that size times its resolution over the base's, so the resolution
    coefficient still counts in the proxy as it does in the MACs. Every candidate starts from the same seed, so
    candidates differ by architecture only. Scores are cached per architecture.
    """

    def __init__(self, config: SearchConfig, base_resolution: int, report: Callable[[str], None]):
        train, validation = load_search_splits(config)
        self.context = SearchContext(config, None, train, validation, train.in_channels, train.num_classes,
                                     resolution=base_resolution)
        self.base_resolution = base_resolution
        self.report = report
        self.scores: dict[tuple[str, int], float | None] = {}
        self.final_scores: dict[tuple[str, int], tuple[float | None, float | None]] = {}
        self.test_set: Any = None  # loaded by the first final evaluation, after every choice is made

    def deploy(self, base: Arch, name: str, *, from_study: bool) -> Arch:
        """The base at the data's deployment resolution. A study's architectures already are; a preset or file
        written for 224 px is deployed at ``resolution`` (or the data's native size), so that the ladder's MACs
        are counted at the resolutions its models train at."""
        if from_study:
            return base
        resolution = self.context.config.resolution or native_resolution(self.context.train)
        if resolution != base.resolution:
            self.report(f"base {name} deployed at {resolution} px (written for {base.resolution} px) for "
                        f"data {self.context.config.data}: the ladder's MACs are counted at what it trains at")
        self.base_resolution = resolution
        self.context = dataclasses.replace(self.context, resolution=resolution)
        return base.replace(resolution=resolution)

    def proxy_resolution(self, arch: Arch) -> int:
        return self.context.training_resolution(arch)

    def settings(self) -> dict[str, Any]:
        config = self.context.config
        return {field: getattr(config, field) for field in PROXY_SETTING_FIELDS}

    def score(self, arch: Arch, label: str) -> float | None:
        """Proxy accuracy, or None when training failed (reported, not raised: the other candidates stand)."""
        resolution = self.proxy_resolution(arch)
        trainable = arch.replace(in_channels=self.context.in_channels, num_classes=self.context.num_classes)
        key = (trainable.arch_id, resolution)
        if key not in self.scores:
            attributes = self._train(trainable, resolution, label)
            self.scores[key] = None if attributes is None else attributes[ATTR_ACCURACY]
        return self.scores[key]

    def final(self, arch: Arch, label: str) -> tuple[float | None, float | None]:
        """(validation, test) accuracy of a ladder step: final evaluation, after the coefficients are chosen, so
        the test set (read here, once per step) decides nothing."""
        config = self.context.config
        if self.test_set is None:
            self.test_set = load_test_set(config.data, test_fraction=config.test_fraction,
                                          split_seed=config.split_seed)
        trainable = arch.replace(in_channels=self.context.in_channels, num_classes=self.context.num_classes)
        key = (trainable.arch_id, self.proxy_resolution(arch))
        if key not in self.final_scores:
            attributes = self._train(trainable, key[1], label, test_set=self.test_set)
            self.final_scores[key] = (None, None) if attributes is None else (attributes[ATTR_ACCURACY],
                                                                               attributes[TEST_ACCURACY])
        return self.final_scores[key]

    def _train(self, arch: Arch, resolution: int, label: str, *, test_set: Any = None) -> dict[str, Any] | None:
        started = time.perf_counter()
        try:
            attributes = train_architecture(arch, self.context, seed=self.context.config.seed, test_set=test_set)
        except (TrainingDiverged, MemoryError, RuntimeError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.report(f"{label}: failed to train ({reason}); left unscored")
            return None
        tested = f", test accuracy {attributes[TEST_ACCURACY]:.4f}" if test_set is not None else ""
        self.report(f"{label}: validation accuracy {attributes[ATTR_ACCURACY]:.4f}{tested} "
                    f"({format_count(cost(arch).macs)} MACs at {arch.resolution}, trained at {resolution} px, "
                    f"{time.perf_counter() - started:.1f} s)")
        return attributes


def distinct_candidates(rows: Iterable[Any], make_arch: Callable[[Any], Arch], count: int) -> list[tuple[Any, Arch]]:
    """The first ``count`` rows with distinct architectures: grid points that round to the same model are
    trained once."""
    chosen, seen = [], set()
    for row in rows:
        arch = make_arch(row)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            chosen.append((row, arch))
            if len(chosen) == count:
                break
    return chosen


def evaluate_candidates(result: Any, candidates: list[tuple[Any, Arch]], evaluator: ProxyEvaluator,
                        label: str) -> Any:
    """``result`` (a SolverResult or AllocationResult) with the candidates' accuracies filled in and the best
    by accuracy as its winner (the library's ranking breaks ties)."""
    scored = {}
    for index, (row, arch) in enumerate(candidates, start=1):
        accuracy = evaluator.score(arch, f"{label} candidate {index}/{len(candidates)}")
        if accuracy is not None:
            scored[row] = dataclasses.replace(row, accuracy=accuracy)
    if not scored:
        raise ScalingError(f"{label}: none of the {len(candidates)} evaluated candidates trained; lower the learning "
                           "rate or evaluate more with --max-candidates")
    rows = tuple(scored.get(row, row) for row in result.rows)
    return dataclasses.replace(result, rows=rows, best=min(scored.values(), key=result.rank_key))


def evaluated_rows(result: Any) -> list[dict[str, Any]]:
    return [row.as_dict() for row in result.rows if row.accuracy is not None]
