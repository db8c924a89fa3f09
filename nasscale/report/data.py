"""Report data: what the report of a study shows, as plain data read from the study storage.

The data functions are pure: they take trial rows (``nasscale.search.results.trial_row`` plus a few fields, see
``report_row``) and return what a plot needs, so they are tested without a study or a browser. The figures
(``nasscale.report.figures``) are thin plotly wrappers over them, and ``nasscale.report.page`` puts everything
on one page that opens offline. Light: no torch, no plotly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasscale.scale.ladder import efficientnet_released_ladder
from nasscale.search.pareto import hypervolume_over_trials, pareto_front
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH,
    ATTR_DUPLICATE_OF,
    ATTR_INFEASIBLE,
    ATTR_RUNGS,
    LADDER_ATTR,
    STUDY_ATTR_CONFIG,
    STUDY_ATTR_OBJECTIVES,
    STUDY_ATTR_RESOLUTION,
    STUDY_ATTR_SPLITS,
)
from nasscale.search.results import best_trials, open_study, trial_row, trials_frame
from nasscale.search.storage import require_existing_storage
from nasscale.search.trials import is_evaluated

logger = logging.getLogger(__name__)
# The cost axes a front is drawn against, with their labels; latency and training time only when a trial recorded
# them. LINEAR_COSTS: measured times, drawn on a linear axis (counts span orders of magnitude: log).
COST_LABELS = {"macs": "MACs", "params": "parameters", "latency_ms": "latency (ms)",
               "train_time_ms": "training time (ms/image)"}
LINEAR_COSTS = ("latency_ms", "train_time_ms")
ACCURACY_AGAINST_COST = ("maximize", "minimize")
# The hypervolume's reference cost sits this far beyond the costliest trained trial, so that every trial counts.
REFERENCE_MARGIN = 1.1
TOP_ARCHITECTURES = 15
UNTRAINED_SHOWN = 50
SETTINGS_PER_ROW = 4
COUNT_SETTINGS = ("max_macs", "max_params", "target_macs")
BUDGET_SETTINGS = {"macs": "max_macs", "params": "max_params", "latency_ms": "max_latency",
                   "train_time_ms": "max_train_ms"}
SAMPLER_NAMES = {"nsga2": "NSGA-II", "tpe": "TPE", "random": "random sampling", "evolution": "regularized evolution",
                 "local": "Pareto local search", "gp": "Gaussian-process BO"}


# ------------------------------------------------------------------------------------------------ rows
# Repeats of an evaluated architecture are not drawn: the trial that evaluated it is.
UNTRAINED_SYMBOLS = {"over budget": "x", "failed": "triangle-down", "stopped early": "diamond-open",
                     "pruned": "diamond-open"}


def report_row(trial: Any) -> dict[str, Any]:
    """``results.trial_row`` (which has the latency where recorded) plus whether it was over budget and the
    architecture."""
    attrs = trial.user_attrs
    return trial_row(trial) | {
        "infeasible": ATTR_INFEASIBLE in attrs,
        "evaluated": is_evaluated(trial),  # what --trials counts: the x axis of progress
        "repeat": ATTR_DUPLICATE_OF in attrs,
        "stopped_early": ATTR_RUNGS in attrs and trial.state.name == "PRUNED",
        "arch": attrs.get(ATTR_ARCH),
    }


def is_trained(row: Mapping[str, Any]) -> bool:
    return row["state"] == "complete" and is_number(row.get("val_accuracy"))


def has_cost(row: Mapping[str, Any], cost: str) -> bool:
    return is_number(row.get(cost))


def outcome(row: Mapping[str, Any]) -> str:
    """complete, over budget, repeat (of an evaluated architecture), stopped early (MO-ASHA), pruned, failed or
    running."""
    if row.get("infeasible"):
        return "over budget"
    if row.get("repeat"):
        return "repeat"
    if row.get("stopped_early"):
        return "stopped early"
    return {"fail": "failed"}.get(row["state"], row["state"])


OUTCOMES_COUNTED = ("stopped early", "repeat", "over budget", "pruned", "failed", "running")


def study_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    outcomes = [outcome(row) for row in rows]
    return {"trials": len(rows), "trained": sum(is_trained(row) for row in rows),
            **{name.replace(" ", "_"): outcomes.count(name) for name in OUTCOMES_COUNTED}}


# ---------------------------------------------------------------------------------------------- Pareto


@dataclass(frozen=True, slots=True)
class ParetoSplit:
    """The trials of one study against one cost: the front (cheapest first), the trained trials it dominates,
    and the trials with a cost but no accuracy (over budget, failed, pruned), drawn apart."""

    cost: str
    front: tuple[Mapping[str, Any], ...]
    dominated: tuple[Mapping[str, Any], ...]
    untrained: tuple[Mapping[str, Any], ...]


def pareto_split(rows: Sequence[Mapping[str, Any]], cost: str = "macs") -> ParetoSplit:
    trained = [row for row in rows if is_trained(row) and has_cost(row, cost)]
    points = [(row["val_accuracy"], row[cost]) for row in trained]
    on_front = set(pareto_front(points, ACCURACY_AGAINST_COST)) if points else set()
    front = sorted((trained[index] for index in on_front), key=lambda row: (row[cost], -row["val_accuracy"]))
    dominated = tuple(row for index, row in enumerate(trained) if index not in on_front)
    untrained = tuple(row for row in rows if not is_trained(row) and has_cost(row, cost)
                      and outcome(row) in UNTRAINED_SYMBOLS)
    return ParetoSplit(cost, tuple(front), dominated, untrained)


def reference_cost(row_groups: Iterable[Sequence[Mapping[str, Any]]], cost: str = "macs") -> float | None:
    """One reference cost for every study compared, so their hypervolumes share a scale."""
    costs = [row[cost] for rows in row_groups for row in rows if is_trained(row) and has_cost(row, cost)]
    return max(costs) * REFERENCE_MARGIN if costs else None


def hypervolume_by_evaluation(rows: Sequence[Mapping[str, Any]], reference: float,
                              cost: str = "macs") -> tuple[float, ...]:
    """The hypervolume of the accuracy-cost front after each evaluated trial, in trial order, as a fraction of
    the box accuracy [0, 1] x cost [0, reference] (1.0 would be perfect accuracy at zero cost). Evaluated trials
    are the axis on which studies of one sampler with different seeds line up: trial numbers also count
    repeats and over-budget samples, which cost nothing."""
    evaluated = sorted((row for row in rows if row.get("evaluated")), key=lambda row: row["trial"])
    points = [(row["val_accuracy"], row[cost]) if is_trained(row) and has_cost(row, cost) else None
              for row in evaluated]
    volumes = hypervolume_over_trials(points, ACCURACY_AGAINST_COST, (0.0, reference))
    return tuple(volume / reference for volume in volumes)


def search_method(config: Mapping[str, Any]) -> str:
    """A study's sampler, with its pruner when that is MO-ASHA: what studies of several seeds share."""
    sampler = SAMPLER_NAMES.get(config.get("sampler", ""), str(config.get("sampler")))
    return sampler + (" + MO-ASHA" if config.get("pruner") == "mo-asha" else "")


def best_so_far(rows: Sequence[Mapping[str, Any]], *, maximize: bool = True) -> tuple[tuple[int, float], ...]:
    """(trial number, best objective value up to it) per completed trial of a single-objective study."""
    pick = max if maximize else min
    curve: list[tuple[int, float]] = []
    for row in sorted(rows, key=lambda row: row["trial"]):
        if row["state"] == "complete" and is_number(row.get("value")):
            best = row["value"] if not curve else pick(curve[-1][1], row["value"])
            curve.append((row["trial"], best))
    return tuple(curve)


# --------------------------------------------------------------------------------------------- choices

STAGE_CHOICES = {"block": "block type", "kernel_size": "kernel", "expand_ratio": "expansion",
                 "num_blocks": "depth", "out_channels": "width"}
NETWORK_CHOICES = {"resolution": "resolution", "stem_channels": "stem width", "head_channels": "head width"}


@dataclass(frozen=True, slots=True)
class ChoiceEffect:
    """The accuracies of trained trials grouped by one choice: ``scope`` is "network" or "stage N"."""

    choice: str
    scope: str
    groups: tuple[tuple[str, tuple[float, ...]], ...]  # (value, accuracies), values in natural order


def choice_effects(rows: Sequence[Mapping[str, Any]]) -> list[ChoiceEffect]:
    """Every architecture choice that took more than one value among the trained trials, network-level first,
    then per stage in the order of STAGE_CHOICES."""
    samples: dict[tuple[str, str], dict[Any, list[float]]] = {}
    for row in rows:
        arch = row.get("arch")
        if not is_trained(row) or not isinstance(arch, Mapping):
            continue
        for key, label in NETWORK_CHOICES.items():
            _add_sample(samples, (label, "network"), arch.get(key), row["val_accuracy"])
        for index, stage in enumerate(arch.get("stages") or ()):
            for key, label in STAGE_CHOICES.items():
                _add_sample(samples, (label, f"stage {index}"), stage.get(key), row["val_accuracy"])
    order = [*NETWORK_CHOICES.values(), *STAGE_CHOICES.values()]
    effects = [ChoiceEffect(choice, scope, tuple((_value_label(value), tuple(accuracies))
                                                 for value, accuracies in sorted(groups.items(), key=_natural)))
               for (choice, scope), groups in samples.items() if len(groups) > 1]
    return sorted(effects, key=lambda effect: (order.index(effect.choice), _scope_order(effect.scope)))


def _add_sample(samples: dict, key: tuple[str, str], value: Any, accuracy: float) -> None:
    if value is not None:
        samples.setdefault(key, {}).setdefault(value, []).append(accuracy)


def _natural(item: tuple[Any, Any]) -> tuple[int, Any]:
    value = item[0]
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _scope_order(scope: str) -> int:
    return -1 if scope == "network" else int(scope.removeprefix("stage "))


def _value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------- ladder


@dataclass(frozen=True, slots=True)
class LadderPoint:
    """One step of a scaling ladder recorded on a study (study attribute ``nasscale_ladder``)."""

    phi: int
    macs: int
    params: int | None
    accuracy: float | None
    deviation: float | None  # (macs - target) / target, target = base MACs x 2^phi
    released_macs: int | None  # EfficientNet's released model at this phi, when the ladder was built from B0

    @property
    def target_macs(self) -> float | None:
        return None if self.deviation is None else self.macs / (1 + self.deviation)


def ladder_points(raw: Any) -> tuple[LadderPoint, ...]:
    """Parse the study attribute; rows without a phi or MACs are skipped (and logged)."""
    points = []
    for row in raw if isinstance(raw, list | tuple) else ():
        if not isinstance(row, Mapping) or not is_number(row.get("phi")) or not is_number(row.get("macs")):
            logger.warning("ladder row without phi or macs skipped: %r", row)
            continue
        points.append(LadderPoint(int(row["phi"]), int(row["macs"]), _optional(row.get("params"), int),
                                  _optional(row.get("accuracy"), float), _optional(row.get("deviation"), float),
                                  _optional(row.get("released_macs"), int)))
    return tuple(sorted(points, key=lambda point: point.phi))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional(value: Any, kind: type) -> Any:
    return kind(value) if is_number(value) else None


def ladder_base_macs(points: Sequence[LadderPoint]) -> float | None:
    """The base model's MACs: the phi-0 step, else any step's target divided by 2^phi."""
    for point in points:
        if point.phi == 0:
            return float(point.macs)
    for point in points:
        if point.target_macs is not None:
            return point.target_macs / 2**point.phi
    return None


def efficientnet_reference(points: Sequence[LadderPoint]) -> tuple[tuple[int, float], ...]:
    """EfficientNet's published ladder next to ours: its released MACs when the ladder recorded them (a ladder
    from B0), else B1-B7's growth over B0 applied to our base, so both start from the same point."""
    recorded = tuple((point.phi, float(point.released_macs)) for point in points if point.released_macs)
    if recorded:
        return recorded
    base = ladder_base_macs(points)
    if base is None:
        return ()

    released = efficientnet_released_ladder()
    return ((0, base), *((step.phi, base * step.macs / (step.target_macs / 2**step.phi)) for step in released))


# ------------------------------------------------------------------------------------------ study data


@dataclass(frozen=True, slots=True)
class StudyData:
    """One study as the report sees it, read once from the storage."""

    name: str
    storage: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]  # "maximize" / "minimize", one per objective
    config: Mapping[str, Any]
    rows: tuple[Mapping[str, Any], ...]
    top: tuple[Mapping[str, Any], ...]  # the Pareto-optimal (or best) trials, most accurate first
    importances: tuple[tuple[str, float], ...]
    importance_note: str  # why there are no importances, when there are none
    ladder: tuple[LadderPoint, ...]
    table: Any  # pandas.DataFrame from results.trials_frame, for --csv
    splits: Mapping[str, Any] | None = None  # where the accuracies come from; None: recorded before the protocol
    resolution: int | None = None  # the deployment resolution every trial was trained and costed at

    @property
    def is_multi_objective(self) -> bool:
        return len(self.directions) > 1

    @property
    def counts(self) -> dict[str, int]:
        return study_counts(self.rows)




def load_study_data(name: str, storage: str) -> StudyData:
    require_existing_storage(storage)
    study = open_study(name, storage)
    directions = tuple(direction.name.lower() for direction in study.directions)
    attrs = study.user_attrs
    objectives = tuple(attrs.get(STUDY_ATTR_OBJECTIVES) or (f"objective {index}" for index in range(len(directions))))
    trials = study.get_trials(deepcopy=False)
    importances, note = parameter_importances(study)
    return StudyData(name=name, storage=storage, objectives=objectives, directions=directions,
                     config=attrs.get(STUDY_ATTR_CONFIG) or {}, rows=tuple(report_row(trial) for trial in trials),
                     top=tuple(report_row(trial) for trial in best_trials(study, top=TOP_ARCHITECTURES)),
                     importances=importances, importance_note=note,
                     ladder=ladder_points(attrs.get(LADDER_ATTR)), table=trials_frame(study),
                     splits=attrs.get(STUDY_ATTR_SPLITS), resolution=attrs.get(STUDY_ATTR_RESOLUTION))


def parameter_importances(study: Any) -> tuple[tuple[tuple[str, float], ...], str]:
    """Optuna's fANOVA importances of the sampled choices for accuracy (the objective value for a single-objective
    study), or none and the reason."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return (), f"parameter importances need at least 2 completed trials; this study has {len(complete)}"
    target: Callable[[Any], float] | None
    if len(study.directions) > 1:
        def target(trial: Any) -> float:
            return trial.user_attrs.get(ATTR_ACCURACY, math.nan)
    else:
        target = None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
    except Exception as error:  # a diagnostic: a dynamic space or degenerate data must not stop the page
        logger.info("parameter importances of %s unavailable: %s", study.study_name, error)
        return (), f"Optuna could not compute parameter importances ({type(error).__name__}: {error})"
    if not importances:
        return (), "Optuna found no parameter shared by every completed trial (a dynamic search space)"
    return tuple(importances.items()), ""
