"""The report's plotly figures: Pareto fronts, hypervolume and best-so-far curves, choice effects, parameter
importances and scaling ladders, each a thin wrapper over ``nasscale.report.data``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from nasscale.errors import SpecError
from nasscale.report.data import (
    BUDGET_SETTINGS,
    COST_LABELS,
    LINEAR_COSTS,
    UNTRAINED_SYMBOLS,
    ChoiceEffect,
    LadderPoint,
    StudyData,
    best_so_far,
    efficientnet_reference,
    hypervolume_by_evaluation,
    is_number,
    ladder_base_macs,
    outcome,
    pareto_split,
    reference_cost,
    search_method,
)
from nasscale.search.config import accuracy_label
from nasscale.spec.serialization import from_dict, stage_summary
from nasscale.units import format_count

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
STUDY_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DOMINATED_COLOR = "rgba(140, 140, 140, 0.55)"


# --------------------------------------------------------------------------------------------- figures


def _hover(row: Mapping[str, Any], study: str | None = None) -> str:
    lines = [f"<b>trial {row['trial']}</b>" + (f" ({html.escape(study)})" if study else "")]
    if row.get("val_accuracy") is not None:
        lines.append(f"validation accuracy {row['val_accuracy']:.4f}")
    costs = [f"{label} {format_count(row[key])}" for key, label in (("macs", "MACs"), ("params", "params"))
             if row.get(key) is not None]
    if row.get("latency_ms") is not None:
        costs.append(f"latency {row['latency_ms']:.3g} ms")
    if row.get("train_time_ms") is not None:
        costs.append(f"training {row['train_time_ms']:.3g} ms/image")
    if costs:
        lines.append(", ".join(costs))
    if row.get("note"):
        lines.append(html.escape(str(row["note"])))
    return "<br>".join([*lines, *architecture_lines(row)])


def architecture_lines(row: Mapping[str, Any]) -> list[str]:
    """The architecture stage by stage, from the trial's ``arch`` attribute (its summary if that will not parse)."""
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
    budgets: set[Any] = {study.config.get(BUDGET_SETTINGS.get(cost, "")) for study in studies} - {None}
    for budget in sorted(budgets):
        figure.add_vline(x=budget, line={"color": "#d62728", "dash": "dash", "width": 1})
    axis = {"type": "linear" if cost in LINEAR_COSTS else "log", "title": {"text": COST_LABELS[cost]},
            "tickformat": ".3~s"}
    label = studies_accuracy_label(studies).replace("val_accuracy", "validation accuracy")
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
        x=[row[cost] for row in rows], y=[strip_label if strip_label else row["val_accuracy"] for row in rows],
        mode=mode, name=name, marker=marker, line=line, text=[_hover(row, study) for row in rows],
        hoverinfo="text", legendgroup=study)


def hypervolume_figure(studies: Sequence[StudyData]) -> Any:
    """Hypervolume after each evaluated trial. Studies that share a search method (sampler, and MO-ASHA) and
    differ only in their seeds are drawn as one: the mean over them, with the band from the lowest to the
    highest, as far as the shortest of them goes."""
    from plotly import graph_objects

    reference = reference_cost((study.rows for study in studies), "macs")
    figure = graph_objects.Figure()
    groups: dict[str, list[tuple[str, tuple[float, ...]]]] = {}
    for study in studies:
        curve = hypervolume_by_evaluation(study.rows, reference, "macs") if reference else ()
        groups.setdefault(search_method(study.config), []).append((study.name, curve))
    banded = sum(len(members) > 1 for members in groups.values()) > 0
    index = 0
    for method, members in groups.items():
        if banded and len(members) > 1:
            _add_band(figure, f"{method} ({len(members)} studies)", [curve for _, curve in members],
                      STUDY_COLORS[index % len(STUDY_COLORS)])
            index += 1
            continue
        for name, curve in members:
            figure.add_trace(graph_objects.Scatter(
                x=list(range(1, len(curve) + 1)), y=list(curve), mode="lines", name=name,
                line={"shape": "hv", "color": STUDY_COLORS[index % len(STUDY_COLORS)]}))
            index += 1
    title = (f"Hypervolume of the accuracy-MACs front over evaluated trials (fraction of accuracy [0, 1] x MACs "
             f"[0, {format_count(reference or 0)}])")
    return _layout(figure, title, xaxis={"title": {"text": "evaluated trials"}},
                   yaxis={"title": {"text": "hypervolume"}})


def _add_band(figure: Any, name: str, curves: list[tuple[float, ...]], color: str) -> None:
    from plotly import graph_objects

    length = min(len(curve) for curve in curves)
    steps = list(range(1, length + 1))
    columns = [[curve[step - 1] for curve in curves] for step in steps]
    low, high = [min(column) for column in columns], [max(column) for column in columns]
    figure.add_trace(graph_objects.Scatter(x=steps + steps[::-1], y=high + low[::-1], fill="toself",
                                           fillcolor=color, opacity=0.2, line={"width": 0}, hoverinfo="skip",
                                           legendgroup=name, showlegend=False))
    figure.add_trace(graph_objects.Scatter(x=steps, y=[sum(column) / len(column) for column in columns],
                                           mode="lines", name=f"{name}: mean, band lowest to highest",
                                           line={"shape": "hv", "color": color}, legendgroup=name))


def best_so_far_figure(studies: Sequence[StudyData]) -> Any:
    from plotly import graph_objects

    figure = graph_objects.Figure()
    for index, study in enumerate(studies):
        color = STUDY_COLORS[index % len(STUDY_COLORS)]
        complete = [row for row in study.rows if row["state"] == "complete" and is_number(row.get("value"))]
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
    figure.update_yaxes(title={"text": "validation accuracy"}, row=1, col=1)
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
    titles = ["MACs against phi", "validation accuracy against phi"]
    figure = make_subplots(rows=1, cols=columns, subplot_titles=titles[:columns])
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
        figure.update_yaxes(title={"text": "validation accuracy"}, row=1, col=2)
    figure.update_yaxes(type="log", tickformat=".3~s", title={"text": "MACs"}, row=1, col=1)
    figure.update_xaxes(title={"text": "phi"}, dtick=1)
    return _layout(figure, "The ladder against the base x 2^phi targets and EfficientNet's")
