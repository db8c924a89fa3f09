"""What a benchmark table says about its space (``nasscale bench info``): the true Pareto front of validation
accuracy against MACs and its hypervolume (what a search is scored against), how settled the ranking is between
epochs, and how well every zero-cost proxy, params and MACs rank the architectures by final accuracy.

Hypervolume: of the (accuracy, MACs / largest MACs in the table) points with reference (0, 1), in [0, 1],
as ``benchmarks/sampler_hypervolume.py`` scores a search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nasscale.evaluate.benchmark_table import BenchmarkRow, BenchmarkTable
from nasscale.search.pareto import hypervolume_2d, pareto_front

DIRECTIONS = ("maximize", "minimize")  # validation accuracy, MACs
REFERENCE = (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Correlation:
    name: str  # a zero-cost proxy, "params", "macs", or "test accuracy"
    spearman: float
    kendall: float
    architectures: int  # those the predictor gave a finite value for


@dataclass(frozen=True, slots=True)
class BenchmarkInfo:
    architectures: int
    expected: int
    epochs: int
    front: tuple[BenchmarkRow, ...]  # the true Pareto front, fewest MACs first
    hypervolume: float
    epoch_rank_stability: tuple[float, ...]  # Kendall tau of epoch k's validation accuracy against the last's
    correlations: tuple[Correlation, ...]
    best: BenchmarkRow  # the highest final validation accuracy (fewer MACs breaks ties)
    build_seconds: float  # training seconds summed over the rows

    @property
    def last_two_epochs_tau(self) -> float:
        return self.epoch_rank_stability[-2] if self.epochs > 1 else math.nan

    def as_dict(self) -> dict[str, Any]:
        return {"architectures": self.architectures, "expected": self.expected, "epochs": self.epochs,
                "pareto_front": [{"arch_id": row.arch_id, "validation_accuracy": row.final_accuracy,
                                  "test_accuracy": row.test_accuracy, "macs": row.macs, "params": row.params}
                                 for row in self.front],
                "hypervolume": self.hypervolume, "kendall_tau_epoch_vs_last": list(self.epoch_rank_stability),
                "kendall_tau_last_two_epochs": self.last_two_epochs_tau,
                "correlations_with_final_validation_accuracy": [
                    {"name": item.name, "spearman": item.spearman, "kendall": item.kendall,
                     "architectures": item.architectures} for item in self.correlations],
                "best": {"arch_id": self.best.arch_id, "validation_accuracy": self.best.final_accuracy,
                         "test_accuracy": self.best.test_accuracy, "macs": self.best.macs},
                "build_seconds": self.build_seconds}


def table_points(rows: list[BenchmarkRow]) -> list[tuple[float, float]]:
    """(final validation accuracy, MACs / the largest MACs of ``rows``) per row."""
    largest = max(row.macs for row in rows)
    return [(row.final_accuracy, row.macs / largest) for row in rows]


def true_front(table: BenchmarkTable) -> tuple[list[BenchmarkRow], float]:
    """The table's Pareto front (fewest MACs first) and its hypervolume: the best any search of it can reach."""
    rows = list(table.rows.values())
    points = table_points(rows)
    front = sorted((rows[index] for index in pareto_front(points, DIRECTIONS)), key=lambda row: row.macs)
    return front, hypervolume_2d(points, DIRECTIONS, REFERENCE)


def describe(table: BenchmarkTable) -> BenchmarkInfo:
    from scipy import stats  # slow to import; only this summary needs it

    rows = list(table.rows.values())
    final = [row.final_accuracy for row in rows]
    stability = tuple(float(stats.kendalltau([row.curve[epoch].validation_accuracy for row in rows], final)[0])
                      for epoch in range(table.epochs))
    predictors: dict[str, list[float | None]] = {
        name: [row.proxies.get(name) for row in rows] for name in sorted({key for row in rows for key in row.proxies})}
    predictors |= {"params": [float(row.params) for row in rows], "macs": [float(row.macs) for row in rows],
                   "test accuracy": [row.test_accuracy for row in rows]}
    correlations = tuple(_correlation(name, values, final, stats) for name, values in predictors.items())
    front, hypervolume = true_front(table)
    best = max(rows, key=lambda row: (row.final_accuracy, -row.macs))
    return BenchmarkInfo(len(rows), int(table.meta["architectures"]), table.epochs, tuple(front), hypervolume,
                         stability, correlations, best, sum(row.train_seconds for row in rows))


def _correlation(name: str, values: list[float | None], final: list[float], stats: Any) -> Correlation:
    pairs = [(value, accuracy) for value, accuracy in zip(values, final, strict=True)
             if value is not None and math.isfinite(value)]
    if len(pairs) < 3:
        return Correlation(name, math.nan, math.nan, len(pairs))
    scores, accuracies = zip(*pairs, strict=True)
    return Correlation(name, float(stats.spearmanr(scores, accuracies)[0]),
                       float(stats.kendalltau(scores, accuracies)[0]), len(pairs))
