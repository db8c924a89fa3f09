"""Multi-objective early stopping: asynchronous successive halving over non-dominated sorting (MO-ASHA).

Optuna refuses ``Trial.report`` and pruners in multi-objective studies (its RFC #3450), so a multi-objective
search would train every trial to the end. This is ASHA (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", MLSys) with the ranking of MO-ASHA (Schmucker, Donini, Zafar, Salinas and Archambeau
2021, "Multi-objective Asynchronous Successive Halving", as in Syne Tune): rungs at ``min_epochs x eta^k``
epochs below ``--epochs``; a trial reaching a rung is ranked with every trial recorded there by its objective
values at that point (the accuracy so far; MACs, params and latency are known from the start), by NSGA-II's
non-dominated rank and crowding distance, and goes on only if it is in the top 1/eta of them.

The rule of Optuna's SuccessiveHalvingPruner, whose trials cannot be paused either: a trial is promoted when
fewer than ``max(1, n // eta)`` of the ``n`` trials at its rung (itself included) rank strictly better. So while
a rung holds fewer than eta trials, only a trial no other beats goes on.

Each rung's values and the decision are written to the trial (``ATTR_RUNGS``) in the study, so every worker
ranks against the same record and a resumed study goes on from it. Trials cut short (killed or interrupted
workers) are left out: their retry reaches the same rungs again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from nasscale.search.pareto import nondominated_order
from nasscale.search.record import ATTR_RUNGS
from nasscale.search.trials import was_cut_short


def rung_epochs(min_epochs: int, reduction_factor: int, epochs: int) -> tuple[int, ...]:
    """The epochs at which trials are ranked: min_epochs x reduction_factor^k, below ``epochs`` (where every
    trial that got there simply finishes)."""
    rungs, rung = [], min_epochs
    while rung < epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return tuple(rungs)


def is_promoted(values: Sequence[float], others: Sequence[Sequence[float]], directions: Sequence[Any],
                reduction_factor: int) -> bool:
    """Whether a trial with ``values`` at a rung goes on, given the values ``others`` recorded at that rung."""
    points: dict[Any, Sequence[float]] = {index: point for index, point in enumerate(others)}
    points["self"] = values
    order = nondominated_order(points, directions)
    keep = max(1, len(points) // reduction_factor)
    better = sum(1 for key, rank in order.items() if key != "self" and rank < order["self"])
    return better < keep


def rung_values(trial: optuna.trial.FrozenTrial, epoch: int) -> list[float] | None:
    record = trial.user_attrs.get(ATTR_RUNGS, {}).get(str(epoch))
    return None if record is None else list(record["values"])


@dataclass(frozen=True, slots=True)
class MultiObjectiveAsha:
    """The pruner of ``--pruner mo-asha``: ``check`` at the end of each epoch."""

    rungs: tuple[int, ...]
    reduction_factor: int

    @classmethod
    def from_settings(cls, *, min_epochs: int, reduction_factor: int, epochs: int) -> MultiObjectiveAsha:
        return cls(rung_epochs(min_epochs, reduction_factor, epochs), reduction_factor)

    def check(self, trial: optuna.Trial, epoch: int, values: Sequence[float]) -> str | None:
        """At a rung: record ``values`` (the objectives after ``epoch``) and decide. Returns why the trial stops,
        or None to go on."""
        if epoch not in self.rungs:
            return None
        others = [recorded for other in trial.study.get_trials(deepcopy=False)
                  if other.number != trial.number and not was_cut_short(other)
                  and (recorded := rung_values(other, epoch)) is not None]
        promoted = is_promoted(values, others, trial.study.directions, self.reduction_factor)
        record = dict(trial.user_attrs.get(ATTR_RUNGS, {}))
        record[str(epoch)] = {"values": list(values), "promoted": promoted}
        trial.set_user_attr(ATTR_RUNGS, record)
        if promoted:
            return None
        return (f"stopped by MO-ASHA after epoch {epoch}: not in the top 1/{self.reduction_factor} of the "
                f"{len(others) + 1} trials at that rung")
