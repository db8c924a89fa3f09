"""Reports on finished studies: the Pareto data behind them and one self-contained HTML page.

The data functions are pure: they take trial rows (``results.trial_row`` plus a few fields, see ``report_row``)
and return what a plot needs, so they are tested without a study or a browser. The figure builders are thin
plotly wrappers over them, and ``write_report`` puts everything on one page that opens offline (plotly's
JavaScript is embedded once).
"""

from __future__ import annotations

import html
import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError, UnknownNameError
from nasscale.pareto import hypervolume_over_trials, pareto_front
from nasscale.search import ATTR_ACCURACY, ATTR_ARCH, ATTR_INFEASIBLE
from nasscale.study import accuracy_label
from nasscale.units import format_count

logger = logging.getLogger(__name__)

STUDY_ATTR_LADDER = "nasscale_ladder"
# The cost axes a front is drawn against, with their labels; latency only when a trial recorded it.
COST_LABELS = {"macs": "MACs", "params": "parameters", "latency_ms": "latency (ms)"}
ACCURACY_AGAINST_COST = ("maximize", "minimize")
# The hypervolume's reference cost sits this far beyond the costliest trained trial, so that every trial counts.
REFERENCE_MARGIN = 1.1
TOP_ARCHITECTURES = 15
UNTRAINED_SHOWN = 50
SETTINGS_PER_ROW = 4
COUNT_SETTINGS = ("max_macs", "max_params", "target_macs")
BUDGET_SETTINGS = {"macs": "max_macs", "params": "max_params", "latency_ms": "max_latency"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
STUDY_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DOMINATED_COLOR = "rgba(140, 140, 140, 0.55)"
UNTRAINED_SYMBOLS = {"over budget": "x", "failed": "triangle-down", "pruned": "diamond-open"}
SAMPLER_NAMES = {"nsga2": "NSGA-II", "tpe": "TPE", "random": "random sampling"}


# ------------------------------------------------------------------------------------------------ rows


def report_row(trial: Any) -> dict[str, Any]:
    """``results.trial_row`` (which has the latency where recorded) plus whether it was over budget and the
    architecture."""
    from nasscale.results import trial_row

    attrs = trial.user_attrs
    return trial_row(trial) | {
        "infeasible": ATTR_INFEASIBLE in attrs,
        "arch": attrs.get(ATTR_ARCH),
    }


def is_trained(row: Mapping[str, Any]) -> bool:
    return row["state"] == "complete" and _is_number(row.get("accuracy"))


def has_cost(row: Mapping[str, Any], cost: str) -> bool:
    return _is_number(row.get(cost))


def outcome(row: Mapping[str, Any]) -> str:
    """complete, over budget, pruned, failed or running."""
    if row.get("infeasible"):
        return "over budget"
    return {"fail": "failed"}.get(row["state"], row["state"])


def study_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    outcomes = [outcome(row) for row in rows]
    return {"trials": len(rows), "trained": sum(is_trained(row) for row in rows),
            **{name.replace(" ", "_"): outcomes.count(name) for name in ("over budget", "pruned", "failed", "running")}}


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
    points = [(row["accuracy"], row[cost]) for row in trained]
    on_front = set(pareto_front(points, ACCURACY_AGAINST_COST)) if points else set()
    front = sorted((trained[index] for index in on_front), key=lambda row: (row[cost], -row["accuracy"]))
    dominated = tuple(row for index, row in enumerate(trained) if index not in on_front)
    untrained = tuple(row for row in rows if not is_trained(row) and has_cost(row, cost)
                      and outcome(row) in UNTRAINED_SYMBOLS)
    return ParetoSplit(cost, tuple(front), dominated, untrained)


def reference_cost(row_groups: Iterable[Sequence[Mapping[str, Any]]], cost: str = "macs") -> float | None:
    """One reference cost for every study compared, so their hypervolumes share a scale."""
    costs = [row[cost] for rows in row_groups for row in rows if is_trained(row) and has_cost(row, cost)]
    return max(costs) * REFERENCE_MARGIN if costs else None


def hypervolume_curve(rows: Sequence[Mapping[str, Any]], reference: float,
                      cost: str = "macs") -> tuple[tuple[int, float], ...]:
    """(trial number, hypervolume of the accuracy-cost front so far) per trained trial, as a fraction of the
    box accuracy [0, 1] x cost [0, reference]: 1.0 would be perfect accuracy at zero cost."""
    trained = sorted((row for row in rows if is_trained(row) and has_cost(row, cost)),
                     key=lambda row: row["trial"])
    if not trained:
        return ()
    points = [(row["accuracy"], row[cost]) for row in trained]
    volumes = hypervolume_over_trials(points, ACCURACY_AGAINST_COST, (0.0, reference))
    return tuple((row["trial"], volume / reference) for row, volume in zip(trained, volumes, strict=True))


def best_so_far(rows: Sequence[Mapping[str, Any]], *, maximize: bool = True) -> tuple[tuple[int, float], ...]:
    """(trial number, best objective value up to it) per completed trial of a single-objective study."""
    pick = max if maximize else min
    curve: list[tuple[int, float]] = []
    for row in sorted(rows, key=lambda row: row["trial"]):
        if row["state"] == "complete" and _is_number(row.get("value")):
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
            _add_sample(samples, (label, "network"), arch.get(key), row["accuracy"])
        for index, stage in enumerate(arch.get("stages") or ()):
            for key, label in STAGE_CHOICES.items():
                _add_sample(samples, (label, f"stage {index}"), stage.get(key), row["accuracy"])
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
        if not isinstance(row, Mapping) or not _is_number(row.get("phi")) or not _is_number(row.get("macs")):
            logger.warning("ladder row without phi or macs skipped: %r", row)
            continue
        points.append(LadderPoint(int(row["phi"]), int(row["macs"]), _optional(row.get("params"), int),
                                  _optional(row.get("accuracy"), float), _optional(row.get("deviation"), float),
                                  _optional(row.get("released_macs"), int)))
    return tuple(sorted(points, key=lambda point: point.phi))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional(value: Any, kind: type) -> Any:
    return kind(value) if _is_number(value) else None


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
    from nasscale.scaling import efficientnet_released_ladder

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

    @property
    def is_multi_objective(self) -> bool:
        return len(self.directions) > 1

    @property
    def counts(self) -> dict[str, int]:
        return study_counts(self.rows)


def require_existing_storage(url: str) -> None:
    """SQLAlchemy would create a missing SQLite file (an empty storage); a mistyped path should fail instead."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if str(path) not in ("", ":memory:") and not path.is_file():
            raise UnknownNameError(f"storage {url!r}: no such file {path}; check --storage")
    elif url.startswith("journal:") and not Path(url.removeprefix("journal:")).is_file():
        raise UnknownNameError(f"storage {url!r}: no such journal file; check --storage")


def load_study_data(name: str, storage: str) -> StudyData:
    from nasscale.backends.optuna_backend import STUDY_ATTR_CONFIG, STUDY_ATTR_OBJECTIVES
    from nasscale.results import best_trials, open_study, trials_frame

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
                     ladder=ladder_points(attrs.get(STUDY_ATTR_LADDER)), table=trials_frame(study))


def parameter_importances(study: Any) -> tuple[tuple[tuple[str, float], ...], str]:
    """Optuna's fANOVA importances of the sampled choices for accuracy (the objective value for a single-objective
    study), or none and the reason."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return (), f"parameter importances need at least 2 completed trials; this study has {len(complete)}"
    if len(study.directions) > 1:
        def target(trial):
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


# --------------------------------------------------------------------------------------------- figures


def _hover(row: Mapping[str, Any], study: str | None = None) -> str:
    lines = [f"<b>trial {row['trial']}</b>" + (f" ({html.escape(study)})" if study else "")]
    if row.get("accuracy") is not None:
        lines.append(f"accuracy {row['accuracy']:.4f}")
    costs = [f"{label} {format_count(row[key])}" for key, label in (("macs", "MACs"), ("params", "params"))
             if row.get(key) is not None]
    if row.get("latency_ms") is not None:
        costs.append(f"latency {row['latency_ms']:.3g} ms")
    if costs:
        lines.append(", ".join(costs))
    if row.get("note"):
        lines.append(html.escape(str(row["note"])))
    return "<br>".join([*lines, *architecture_lines(row)])


def architecture_lines(row: Mapping[str, Any]) -> list[str]:
    """The architecture stage by stage, from the trial's ``arch`` attribute (its summary if that will not parse)."""
    from nasscale.arch import from_dict, stage_summary

    try:
        arch = from_dict(row["arch"]) if isinstance(row.get("arch"), Mapping) else None
    except SpecError:
        arch = None
    if arch is None:
        return [html.escape(part) for part in (row.get("summary") or "").split(" | ") if part]
    head = f"head {arch.head_channels}" if arch.head_channels else "head norm"
    return [f"stem {arch.stem.value} {arch.stem_channels}, {arch.resolution}px",
            *(f"stage {index}: {stage_summary(stage)}" for index, stage in enumerate(arch.stages)), head]


def _layout(figure: Any, title: str, **axes: Any) -> Any:
    figure.update_layout(title={"text": title}, template="plotly_white", height=480, hoverlabel={"align": "left"},
                         margin={"l": 70, "r": 30, "t": 60, "b": 60}, legend={"orientation": "h", "y": -0.18},
                         **axes)
    return figure


def front_figure(studies: Sequence[StudyData], cost: str = "macs") -> Any:
    """Accuracy against one cost for every study: each study's front as a line, dominated trials grey, trials
    without an accuracy (over budget, failed, pruned) on a strip below."""
    from plotly import graph_objects
    from plotly.subplots import make_subplots

    splits = [(study, pareto_split(study.rows, cost)) for study in studies]
    has_strip = any(split.untrained for _, split in splits)
    figure = (make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.04)
              if has_strip else graph_objects.Figure())
    strip = {"row": 2, "col": 1} if has_strip else {}
    main = {"row": 1, "col": 1} if has_strip else {}
    for index, (study, split) in enumerate(splits):
        color = STUDY_COLORS[index % len(STUDY_COLORS)]
        label = f"{study.name}: " if len(studies) > 1 else ""
        if split.dominated:
            figure.add_trace(_points(split.dominated, cost, study.name, f"{label}dominated",
                                     {"color": DOMINATED_COLOR, "size": 8, "line": {"color": color, "width": 1}}),
                             **main)
        if split.front:
            figure.add_trace(_points(split.front, cost, study.name, f"{label}Pareto front",
                                     {"color": color, "size": 11, "line": {"color": "white", "width": 1}},
                                     mode="lines+markers", line={"color": color, "shape": "hv"}), **main)
        for name, symbol in UNTRAINED_SYMBOLS.items():
            rows = [row for row in split.untrained if outcome(row) == name]
            if rows:
                figure.add_trace(_points(rows, cost, study.name, f"{label}{name} (not trained)",
                                         {"color": "#d62728", "symbol": symbol, "size": 9}, strip_label=study.name),
                                 **strip)
    for budget in sorted({study.config.get(BUDGET_SETTINGS.get(cost, "")) for study in studies} - {None}):
        figure.add_vline(x=budget, line={"color": "#d62728", "dash": "dash", "width": 1})
    axis = {"type": "log" if cost != "latency_ms" else "linear", "title": {"text": COST_LABELS[cost]},
            "tickformat": ".3~s"}
    label = studies_accuracy_label(studies)
    if has_strip:
        # Both rows share the x range, so both need the same axis type or the ticks lie about the points.
        figure.update_xaxes(type=axis["type"], tickformat=axis["tickformat"])
        figure.update_xaxes(title=axis["title"], row=2, col=1)
        figure.update_yaxes(title={"text": label}, row=1, col=1)
        figure.update_yaxes(title={"text": f"no {label}"}, type="category", row=2, col=1)
        return _layout(figure, f"{label.capitalize()} against {COST_LABELS[cost]}")
    return _layout(figure, f"{label.capitalize()} against {COST_LABELS[cost]}", xaxis=axis,
                   yaxis={"title": {"text": label}})


def studies_accuracy_label(studies: Sequence[StudyData]) -> str:
    """The accuracy axis's name: accuracy, or "score (synflow)" for studies evaluated by a zero-cost proxy."""
    return " / ".join(dict.fromkeys(accuracy_label(study.config.get("evaluator")) for study in studies))


def _points(rows: Sequence[Mapping[str, Any]], cost: str, study: str, name: str, marker: dict, *,
            mode: str = "markers", line: dict | None = None, strip_label: str | None = None) -> Any:
    from plotly import graph_objects

    return graph_objects.Scatter(
        x=[row[cost] for row in rows], y=[strip_label if strip_label else row["accuracy"] for row in rows],
        mode=mode, name=name, marker=marker, line=line, text=[_hover(row, study) for row in rows],
        hoverinfo="text", legendgroup=study)


def hypervolume_figure(studies: Sequence[StudyData]) -> Any:
    from plotly import graph_objects

    reference = reference_cost((study.rows for study in studies), "macs")
    figure = graph_objects.Figure()
    for index, study in enumerate(studies):
        curve = hypervolume_curve(study.rows, reference, "macs") if reference else ()
        figure.add_trace(graph_objects.Scatter(
            x=[trial for trial, _ in curve], y=[volume for _, volume in curve], mode="lines+markers",
            name=study.name, line={"shape": "hv", "color": STUDY_COLORS[index % len(STUDY_COLORS)]}))
    title = (f"Hypervolume of the accuracy-MACs front over trials (fraction of accuracy [0, 1] x MACs "
             f"[0, {format_count(reference or 0)}])")
    return _layout(figure, title, xaxis={"title": {"text": "trial"}}, yaxis={"title": {"text": "hypervolume"}})


def best_so_far_figure(studies: Sequence[StudyData]) -> Any:
    from plotly import graph_objects

    figure = graph_objects.Figure()
    for index, study in enumerate(studies):
        color = STUDY_COLORS[index % len(STUDY_COLORS)]
        complete = [row for row in study.rows if row["state"] == "complete" and _is_number(row.get("value"))]
        curve = best_so_far(study.rows, maximize=study.directions[0] == "maximize")
        figure.add_trace(graph_objects.Scatter(
            x=[row["trial"] for row in complete], y=[row["value"] for row in complete], mode="markers",
            name=f"{study.name}: trial", marker={"color": DOMINATED_COLOR, "line": {"color": color, "width": 1}},
            text=[_hover(row, study.name) for row in complete], hoverinfo="text", legendgroup=study.name))
        figure.add_trace(graph_objects.Scatter(
            x=[trial for trial, _ in curve], y=[value for _, value in curve], mode="lines", name=f"{study.name}: best",
            line={"shape": "hv", "color": color}, legendgroup=study.name))
    objective = ", ".join(sorted({study.objectives[0] for study in studies}))
    return _layout(figure, f"Best {objective} so far", xaxis={"title": {"text": "trial"}},
                   yaxis={"title": {"text": objective}})


def choice_figure(effects: Sequence[ChoiceEffect], title: str) -> Any:
    """Box plots of accuracy per value of each choice, one panel per effect (per stage, or per network choice)."""
    from plotly import graph_objects
    from plotly.subplots import make_subplots

    titles = [effect.choice if effect.scope == "network" else effect.scope for effect in effects]
    figure = make_subplots(rows=1, cols=len(effects), shared_yaxes=True, subplot_titles=titles)
    for column, effect in enumerate(effects, start=1):
        for value, accuracies in effect.groups:
            figure.add_trace(graph_objects.Box(
                y=list(accuracies), name=value, boxpoints="all", jitter=0.4, pointpos=0, showlegend=False,
                marker={"color": STUDY_COLORS[0], "size": 6}, line={"color": STUDY_COLORS[0]},
                hovertemplate=f"{html.escape(effect.choice)} {html.escape(value)}: %{{y:.4f}}<extra></extra>"),
                row=1, col=column)
        figure.update_xaxes(type="category", row=1, col=column)
    figure.update_yaxes(title={"text": "accuracy"}, row=1, col=1)
    return _layout(figure, title).update_layout(height=340, margin={"b": 40})


def importance_figure(importances: Sequence[tuple[str, float]], target: str = "accuracy") -> Any:
    from plotly import graph_objects

    ordered = list(reversed(importances))  # plotly draws the first bar at the bottom
    figure = graph_objects.Figure(graph_objects.Bar(
        x=[value for _, value in ordered], y=[name for name, _ in ordered], orientation="h",
        marker={"color": STUDY_COLORS[0]}, hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    layout = _layout(figure, f"Parameter importances for {target} (Optuna, fANOVA)",
                     xaxis={"title": {"text": "importance (sums to 1)"}}, yaxis={"automargin": True})
    layout.update_layout(height=max(300, 28 * len(importances) + 120))
    return layout


def ladder_figure(points: Sequence[LadderPoint]) -> Any:
    """MACs against phi (ours, the 2^phi ideal, EfficientNet's published ladder) and, where the steps were trained,
    accuracy against phi."""
    from plotly import graph_objects
    from plotly.subplots import make_subplots

    measured = [point for point in points if point.accuracy is not None]
    columns = 2 if measured else 1
    figure = make_subplots(rows=1, cols=columns, subplot_titles=["MACs against phi", "accuracy against phi"][:columns])
    phis = [point.phi for point in points]
    figure.add_trace(graph_objects.Scatter(x=phis, y=[point.macs for point in points], mode="lines+markers",
                                           name="our ladder", line={"color": STUDY_COLORS[0]}), row=1, col=1)
    base = ladder_base_macs(points)
    low = min(0, *phis) if base is not None else min(phis)
    if base is not None:
        ideal = list(range(low, max(phis) + 1))
        figure.add_trace(graph_objects.Scatter(x=ideal, y=[base * 2**phi for phi in ideal], mode="lines",
                                               name="base x 2^phi", line={"color": "grey", "dash": "dot"}),
                         row=1, col=1)
    # EfficientNet only over our ladder's phis: its B7 would otherwise set the scale of a short ladder.
    reference = [(phi, macs) for phi, macs in efficientnet_reference(points) if low <= phi <= max(phis)]
    if reference:
        figure.add_trace(graph_objects.Scatter(
            x=[phi for phi, _ in reference], y=[macs for _, macs in reference], mode="lines+markers",
            name="EfficientNet B0-B7 (published)", line={"color": STUDY_COLORS[1], "dash": "dash"}), row=1, col=1)
    if measured:
        figure.add_trace(graph_objects.Scatter(x=[point.phi for point in measured],
                                               y=[point.accuracy for point in measured], mode="lines+markers",
                                               name="our ladder: accuracy", line={"color": STUDY_COLORS[2]}),
                         row=1, col=2)
        figure.update_yaxes(title={"text": "accuracy"}, row=1, col=2)
    figure.update_yaxes(type="log", tickformat=".3~s", title={"text": "MACs"}, row=1, col=1)
    figure.update_xaxes(title={"text": "phi"}, dtick=1)
    return _layout(figure, "The ladder against the base x 2^phi targets and EfficientNet's")


# ------------------------------------------------------------------------------------------------ page

PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fafafa; }
main { max-width: 1360px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.4em; }
.plot { background: white; border: 1px solid #e4e4e4; border-radius: 6px; margin: 12px 0; padding: 4px; }
.note { color: #555; } .empty { background: #fff7e0; border-left: 4px solid #e6a700; padding: 8px 12px; }
table { border-collapse: collapse; background: white; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
td.number { text-align: right; font-variant-numeric: tabular-nums; } code { font-size: 0.95em; }
"""


class _Page:
    """The page's parts in order; figures get stable ids so the same studies give the same file."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.figures = 0

    def text(self, tag: str, text: str, css_class: str = "") -> None:
        attribute = f' class="{css_class}"' if css_class else ""
        self.parts.append(f"<{tag}{attribute}>{html.escape(text)}</{tag}>")

    def figure(self, figure: Any) -> None:
        self.figures += 1
        markup = figure.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG,
                                div_id=f"plot-{self.figures}")
        self.parts.append(f'<div class="plot">{markup}</div>')

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = ()) -> None:
        head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
        body = "".join("<tr>" + "".join(_cell(value, index < len(numeric) and numeric[index])
                                        for index, value in enumerate(row)) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def html(self, title: str) -> str:
        from plotly.offline import get_plotlyjs

        # plotly's JavaScript once, in the page itself, so that it opens offline
        script = f'<script type="text/javascript">{get_plotlyjs()}</script>' if self.figures else ""
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f"<style>{PAGE_STYLE}</style>{script}</head><body><main>{''.join(self.parts)}</main></body></html>\n")


def _cell(value: Any, numeric: bool) -> str:
    text = "" if value is None else str(value)
    return f'<td class="number">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def describe_study(study: StudyData) -> str:
    """One sentence from the stored config, e.g. "NSGA-II over accuracy and MACs on space tiny with digits"."""
    config = study.config
    if not config:
        return "no nasscale settings recorded (a study made outside nasscale?)"
    objectives = " and ".join(study.objectives)
    if config.get("reward") and config.get("target_latency"):
        objectives = (f"the {config['reward']} reward ACC x (LAT/{config['target_latency']:g} ms)"
                      f"^{config.get('reward_exponent')}")
    elif config.get("reward"):
        objectives = (f"the {config['reward']} reward ACC x (MACs/{format_count(config.get('target_macs') or 0)})"
                      f"^{config.get('reward_exponent')}")
    budgets = [f"{name} <= {format_count(config[key])}" for key, name in (("max_macs", "MACs"),
                                                                           ("max_params", "params")) if config.get(key)]
    budgets += [f"latency <= {config['max_latency']:g} ms"] if config.get("max_latency") else []
    sentence = (f"{SAMPLER_NAMES.get(config.get('sampler'), config.get('sampler'))} over {objectives} on space "
                f"{config.get('space')} with data {config.get('data')}; {config.get('trials')} trained trials of "
                f"{config.get('epochs')} epoch(s) at {config.get('proxy_resolution') or 'native'} px, "
                f"seed {config.get('seed')}")
    return sentence + (f"; budget {', '.join(budgets)}" if budgets else "") + _evaluation_text(config)


def _evaluation_text(config: Mapping[str, Any]) -> str:
    evaluator, prefilter = config.get("evaluator"), config.get("prefilter")
    latency = "; latency " + (f"predicted from {config['latency_table']}" if config.get("latency_table")
                              else "measured per trial")
    text = latency if config.get("latency_table") or config.get("max_latency") or config.get("target_latency") \
        or "latency" in (config.get("objectives") or ()) else ""
    if evaluator and evaluator != "training":
        text += f"; no training: each trial's accuracy axis is the {evaluator.removeprefix('zero-cost:')} score"
    if prefilter:
        name, _, count = str(prefilter).partition(":")
        text += f"; each trial trains the best by {name} of {count} candidates"
    return text


def _counts_text(counts: Mapping[str, int]) -> str:
    parts = [f"{counts['trials']} trials", f"{counts['trained']} trained"]
    parts += [f"{counts[key]} {key.replace('_', ' ')}" for key in ("over_budget", "pruned", "failed", "running")
              if counts[key]]
    return ", ".join(parts)


def _empty_reason(study: StudyData) -> str | None:
    counts = study.counts
    if counts["trials"] == 0:
        return (f"Study {study.name!r} holds no trials yet: run 'nasscale search --study {study.name} --storage "
                f"{study.storage}' first.")
    if counts["trained"] == 0:
        return (f"None of the {counts['trials']} trials of study {study.name!r} finished training "
                f"({_counts_text(counts)}); the table below gives the reasons.")
    return None


def _overview(page: _Page, studies: Sequence[StudyData]) -> None:
    page.text("h1", "nasscale report: " + ", ".join(study.name for study in studies))
    storages = sorted({study.storage for study in studies})
    page.text("p", f"Storage {', '.join(storages)}. Accuracy is validation accuracy after proxy training; MACs are "
                   "multiply-adds at batch 1 (what EfficientNet calls FLOPs), counted from the architecture.", "note")
    page.table(["study", "search", "trials"],
               [(study.name, describe_study(study), _counts_text(study.counts)) for study in studies])
    for study in studies:
        reason = _empty_reason(study)
        if reason:
            page.text("p", reason, "empty")


def _fronts(page: _Page, studies: Sequence[StudyData]) -> None:
    trained = [study for study in studies if study.counts["trained"]]
    page.text("h2", "Pareto fronts")
    if not trained:
        page.text("p", "No trained trial in any study yet: there is no front to draw.", "empty")
        return
    page.text("p", "Each study's Pareto front (no other trial is both more accurate and cheaper) is the line; "
                   "dominated trials are grey; trials that never got an accuracy (over the budget, failed or "
                   "pruned) sit on the strip below; a dashed red line marks a budget. Hover a point for the trial "
                   "and its architecture stage by stage.", "note")
    for cost in COST_LABELS:
        if any(has_cost(row, cost) for study in trained for row in study.rows if is_trained(row)):
            page.figure(front_figure(studies, cost))
    multi = [study for study in trained if study.is_multi_objective]
    single = [study for study in trained if not study.is_multi_objective]
    page.text("h2", "Progress over trials")
    if multi:
        page.figure(hypervolume_figure(multi))
    if single:
        page.figure(best_so_far_figure(single))


def _study_section(page: _Page, study: StudyData, show_heading: bool) -> None:
    if show_heading:
        page.text("h2", f"Study {study.name}")
    page.text("h3", "Top architectures")
    _top_table(page, study)
    _choices(page, study)
    if study.ladder:
        page.text("h3", "Scaling ladder")
        page.figure(ladder_figure(study.ladder))
        if all(point.accuracy is None for point in study.ladder):
            page.text("p", "No step of the ladder was trained, so there is no accuracy to draw: 'nasscale scale "
                           "--study NAME' trains the steps with the search's proxy.", "note")
    _untrained_table(page, study)
    page.text("h3", "Settings")
    page.text("p", describe_study(study), "note")
    settings = [(key, _setting_text(key, value)) for key, value in study.config.items()]
    columns = SETTINGS_PER_ROW
    page.table(["setting", "value"] * columns,
               [sum(settings[start:start + columns], ()) for start in range(0, len(settings), columns)])


def _setting_text(key: str, value: Any) -> str:
    if key in COUNT_SETTINGS and _is_number(value):
        return format_count(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return "not set" if value is None else str(value)


def _top_table(page: _Page, study: StudyData) -> None:
    if not study.top:
        page.text("p", "No completed trial yet.", "empty")
        return
    kind = "Pareto-optimal trials" if study.is_multi_objective else "best trials by objective value"
    page.text("p", f"The {kind}, most accurate first.", "note")
    show_latency = any(row.get("latency_ms") is not None for row in study.top)
    show_value = not study.is_multi_objective
    header = ["trial", accuracy_label(study.config.get("evaluator")), "MACs", "params",
              *(["latency ms"] if show_latency else []),
              *([study.objectives[0]] if show_value else []), "architecture"]
    rows = []
    for row in sorted(study.top, key=lambda row: -(row.get("accuracy") or 0.0)):
        cells = [row["trial"], _format(row.get("accuracy"), ".4f"), _count(row.get("macs")), _count(row.get("params"))]
        cells += [_format(row.get("latency_ms"), ".3g")] if show_latency else []
        cells += [_format(row.get("value"), ".4f")] if show_value else []
        rows.append([*cells, row.get("summary") or ""])
    page.table(header, rows, numeric=[True] * (len(header) - 1))


def _format(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _count(value: Any) -> str:
    return "" if value is None else format_count(value)


def _choices(page: _Page, study: StudyData) -> None:
    page.text("h3", "How the choices matter")
    effects = choice_effects(study.rows)
    if not effects:
        page.text("p", "Not enough trained trials with differing architectures to compare choices.", "empty")
    else:
        page.text("p", "Accuracy of the trained trials grouped by each architecture choice that varied.", "note")
        network = [effect for effect in effects if effect.scope == "network"]
        if network:
            page.figure(choice_figure(network, "Accuracy by network-level choice"))
        staged = [effect for effect in effects if effect.scope != "network"]
        for choice, group in itertools.groupby(staged, key=lambda effect: effect.choice):
            page.figure(choice_figure(list(group), f"Accuracy by {choice}, per stage"))
    if study.importances:
        target = study.objectives[0] if not study.is_multi_objective else "accuracy"
        page.figure(importance_figure(study.importances, target))
    else:
        page.text("p", study.importance_note, "empty")


def _untrained_table(page: _Page, study: StudyData) -> None:
    untrained = [row for row in study.rows if not is_trained(row)]
    if not untrained:
        return
    page.text("h3", "Trials without an accuracy")
    shown = untrained[:UNTRAINED_SHOWN]
    page.table(["trial", "outcome", "MACs", "params", "reason"],
               [(row["trial"], outcome(row), _count(row.get("macs")), _count(row.get("params")), row.get("note") or "")
                for row in shown], numeric=[True, False, True, True])
    if len(untrained) > len(shown):
        page.text("p", f"... and {len(untrained) - len(shown)} more (see --csv).", "note")


def render_report(studies: Sequence[StudyData], out_path: str | Path, *, csv_path: str | Path | None = None) -> Path:
    """Write the page for studies already loaded (``load_study_data``); returns the page's path."""
    _require_plotly()
    page = _Page()
    _overview(page, studies)
    _fronts(page, studies)
    for study in studies:
        _study_section(page, study, show_heading=True)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page.html("nasscale report: " + ", ".join(study.name for study in studies)), encoding="utf-8")
    logger.info("wrote report %s", out)
    if csv_path is not None:
        write_trials_csv(studies, csv_path)
    return out


def _require_plotly() -> None:
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise NasscaleError("the report draws with plotly, which is not installed: pip install 'plotly>=6'") from None


def write_trials_csv(studies: Sequence[StudyData], csv_path: str | Path) -> Path:
    import pandas

    frames = [study.table.assign(study=study.name) for study in studies]
    table = pandas.concat(frames, ignore_index=True)
    table = table[["study", *[column for column in table.columns if column != "study"]]]
    path = Path(csv_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    logger.info("wrote trials table %s", path)
    return path


def write_report(study_names: Sequence[str], storage: str, out_path: str | Path, *,
                 csv_path: str | Path | None = None) -> Path:
    """One self-contained HTML page on the studies (their fronts on common plots), plus the trials as CSV."""
    if not study_names:
        raise UnknownNameError("name at least one study (--study NAME)")
    studies = [load_study_data(name, storage) for name in dict.fromkeys(study_names)]
    return render_report(studies, out_path, csv_path=csv_path)
