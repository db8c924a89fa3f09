"""The report page: one self-contained HTML file over one or more studies (plotly's JavaScript embedded once,
so it opens offline), and the trials table as CSV beside it.
"""

from __future__ import annotations

import html
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, UnknownNameError
from nasscale.report.data import (
    COST_LABELS,
    COUNT_SETTINGS,
    SAMPLER_NAMES,
    SETTINGS_PER_ROW,
    UNTRAINED_SHOWN,
    StudyData,
    choice_effects,
    has_cost,
    is_number,
    is_trained,
    load_study_data,
    outcome,
)
from nasscale.report.figures import (
    PLOT_CONFIG,
    best_so_far_figure,
    choice_figure,
    front_figure,
    hypervolume_figure,
    importance_figure,
    ladder_figure,
)
from nasscale.search.config import accuracy_label
from nasscale.units import format_count

# ------------------------------------------------------------------------------------------------ page

logger = logging.getLogger(__name__)

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
    budgets += [f"training <= {config['max_train_ms']:g} ms/image"] if config.get("max_train_ms") else []
    sampler: Any = config.get("sampler")  # a recorded setting: any value, or None
    sentence = (f"{SAMPLER_NAMES.get(sampler, sampler)} over {objectives} on space "
                f"{config.get('space')} with data {config.get('data')}; {config.get('trials')} trained trials of "
                f"{config.get('epochs')} epoch(s) {_resolution_text(study)}, seed {config.get('seed')}")
    return sentence + (f"; budget {', '.join(budgets)}" if budgets else "") + _evaluation_text(config)


def _resolution_text(study: StudyData) -> str:
    """Where the accuracies come from and at what size the trials trained."""
    if study.splits is None or study.resolution is None:
        return ("recorded before the evaluation protocol (its accuracies may be on the test set, its MACs at "
                "another resolution than it trained at)")
    proxy = study.config.get("proxy_resolution")
    trained = f"(the largest trained at proxy {proxy} px) " if proxy else ""
    return (f"{trained}at the deployment resolution {study.resolution} px, scored on the validation split "
            f"({study.splits.get('validation')}; test set unread)")


def _evaluation_text(config: Mapping[str, Any]) -> str:
    evaluator, prefilter = config.get("evaluator"), config.get("prefilter")
    latency = "; latency " + (f"predicted from {config['latency_table']}" if config.get("latency_table")
                              else "measured per trial")
    text = latency if config.get("latency_table") or config.get("max_latency") or config.get("target_latency") \
        or "latency" in (config.get("objectives") or ()) else ""
    if config.get("max_train_ms") or "train_time" in (config.get("objectives") or ()):
        text += (f"; training time measured per architecture (ms per image of one SGD step, batch "
                 f"{config.get('batch_size')})")
    if evaluator and evaluator != "training":
        text += f"; no training: each trial's accuracy axis is the {evaluator.removeprefix('zero-cost:')} score"
    if prefilter:
        name, _, count = str(prefilter).partition(":")
        text += f"; each trial trains the best by {name} of {count} candidates"
    return text


def _counts_text(counts: Mapping[str, int]) -> str:
    parts = [f"{counts['trials']} trials", f"{counts['trained']} trained"]
    words = {"repeat": "repeat(s) not trained again"}
    parts += [f"{counts[key]} {words.get(key, key.replace('_', ' '))}"
              for key in ("stopped_early", "repeat", "over_budget", "pruned", "failed", "running") if counts[key]]
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
    page.text("p", f"Storage {', '.join(storages)}. Accuracy is validation accuracy after proxy training, on a "
                   "split of the training data (no search reads the test set); MACs are multiply-adds at batch 1 "
                   "(what EfficientNet calls FLOPs), counted from the architecture at the resolution it trained "
                   "at.", "note")
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
    if key in COUNT_SETTINGS and is_number(value):
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
    show_train_time = any(row.get("train_time_ms") is not None for row in study.top)
    show_value = not study.is_multi_objective
    header = ["trial", accuracy_label(study.config.get("evaluator")), "MACs", "params",
              *(["latency ms"] if show_latency else []), *(["train ms/image"] if show_train_time else []),
              *([study.objectives[0]] if show_value else []), "architecture"]
    rows = []
    for row in sorted(study.top, key=lambda row: -(row.get("val_accuracy") or 0.0)):
        cells = [row["trial"], _format(row.get("val_accuracy"), ".4f"), _count(row.get("macs")),
                 _count(row.get("params"))]
        cells += [_format(row.get("latency_ms"), ".3g")] if show_latency else []
        cells += [_format(row.get("train_time_ms"), ".3g")] if show_train_time else []
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
