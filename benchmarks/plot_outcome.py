"""The outcome benchmark's figure (issue 18): test accuracy against MACs, one line per family across the budgets
B, 2B and 4B (the searched base and its compound-scaled models, the same base scaled by one dimension, each
hand-designed network fitted to the budgets, random search's base), means over seeds with their standard
deviation as error bars, from ``benchmarks/results/outcome.json``.

    python benchmarks/plot_outcome.py                       # docs/outcome.png
    python benchmarks/plot_outcome.py --results benchmarks/results/outcome_quick.json --out /tmp/outcome.png

A plotly figure (``figure``, the one a report can embed), written as an HTML page and photographed by headless
Chromium (``apt-get install chromium``), as ``plot_samplers.py`` does: matplotlib is not installed here and
plotly's own static export needs kaleido, which is not either. Without Chromium only the page is written.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from outcome import BASELINE, RANDOM, RESULTS, ROOT, SEARCHED, SINGLE, SINGLE_DIMENSIONS, model_rows
from plot_samplers import screenshot

OUTPUT = ROOT / "docs" / "outcome.png"
WIDTH, HEIGHT = 1000, 600
COLOURS = {"searched": "#d62728", "depth": "#ff9896", "width": "#f7b6d2", "resolution": "#c49c94",
           "random-search": "#555555", "mobilenet_v2": "#1f77b4", "mobilenet_v3_small": "#aec7e8",
           "mobilenet_v3_large": "#17becf", "mnasnet_b1": "#2ca02c", "efficientnet_b0": "#9467bd",
           "resnet18": "#8c564b", "shufflenet_v2_x1_0": "#bcbd22", "regnet_y_400mf": "#7f7f7f"}


def families(document: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """(name, rows by budget, line style) of each line of the figure."""
    rows = [row for row in model_rows(document).values() if row["test_mean_pp"] is not None]

    def line(keep) -> list[dict[str, Any]]:
        return sorted((row for row in rows if keep(row)), key=lambda row: row["macs"])

    searched_base = [row for row in rows if row["family"] == SEARCHED and row["model"] == "base"]
    lines = [("searched + compound scaling", line(lambda row: row["family"] == SEARCHED),
              {"color": COLOURS["searched"], "width": 3})]
    for dimension in SINGLE_DIMENSIONS:
        points = searched_base + line(lambda row, name=dimension: row["family"] == SINGLE and row["model"] == name)
        lines.append((f"searched + {dimension} only", sorted(points, key=lambda row: row["macs"]),
                      {"color": COLOURS[dimension], "dash": "dash", "width": 2}))
    lines.append(("random-search base", line(lambda row: row["family"] == RANDOM),
                  {"color": COLOURS["random-search"], "width": 2}))
    for name in document["plan"]["baselines"]:
        lines.append((name, line(lambda row, name=name: row["family"] == BASELINE and row["model"] == name),
                      {"color": COLOURS.get(name, "#e377c2"), "width": 1.5, "dash": "dot"}))
    return [(name, points, style) for name, points, style in lines if points]


def figure(document: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    plan = document["plan"]
    shown = go.Figure()
    for name, points, style in families(document):
        shown.add_trace(go.Scatter(
            x=[row["macs"] for row in points], y=[row["test_mean_pp"] for row in points], name=name,
            mode="lines+markers", line=style, marker={"size": 9 if style["width"] >= 2 else 6},
            error_y={"type": "data", "array": [row["test_std_pp"] or 0 for row in points], "visible": True,
                     "thickness": 1},
            text=[f"{row['model']} at {row['factor']}B: {row['resolution']} px" for row in points],
            hovertemplate="%{text}<br>%{x:.3s} MACs<br>%{y:.2f}%<extra></extra>"))
    for factor in plan["factors"]:
        shown.add_vline(x=plan["budget"] * factor, line_dash="dot", line_color="#bbbbbb")
        # On a log axis an annotation's x is the exponent (plotly's convention).
        shown.add_annotation(x=math.log10(plan["budget"] * factor), y=1, yref="paper", yanchor="bottom",
                             text=f"{factor}B", showarrow=False, font={"color": "#777777"})
    shown.update_layout(
        title=f"Test accuracy against MACs on {plan['data']}<br><sup>{plan['space']} searched at "
              f"{plan['resolution']} px under B = {plan['budget'] / 1e6:g}M MACs; every model {plan['recipe']} for "
              f"{plan['epochs']} epoch(s); mean and standard deviation over {plan['seeds']} seed(s)</sup>",
        xaxis={"title": "MACs per image (log)", "type": "log"}, yaxis_title="test accuracy (%)",
        template="plotly_white", width=WIDTH, height=HEIGHT, legend={"x": 1.01, "y": 1})
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=OUTPUT, help="the PNG")
    parser.add_argument("--html", type=Path, help="also keep the HTML page here")
    options = parser.parse_args()
    document = json.loads(options.results.read_text())
    shown = figure(document)
    with tempfile.TemporaryDirectory() as folder:
        page = options.html or Path(folder) / "outcome.html"
        shown.write_html(page, include_plotlyjs=True, full_html=True, config={"displayModeBar": False})
        options.out.parent.mkdir(parents=True, exist_ok=True)
        taken = screenshot(page, options.out, WIDTH, HEIGHT)
    print(f"saved {options.out}" if taken else f"no chromium: no PNG (the page: {options.html or 'not kept'})")


if __name__ == "__main__":
    main()
