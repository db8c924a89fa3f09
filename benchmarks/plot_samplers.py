"""Plot of the table benchmark: hypervolume against compute for every method, the mean over seeds with its 95%
confidence band, from the curves ``sampler_hypervolume.py --evaluator bench:FILE`` saved. Compute is counted in
full evaluations (``epochs`` epochs each), so a run with early stopping is drawn at the compute it spent.

    python benchmarks/plot_samplers.py                      # docs/sampler-hypervolume.html and .png
    python benchmarks/plot_samplers.py --results benchmarks/results/sampler_mo_asha_table.json \
        --out docs/mo-asha-hypervolume.html

The PNG is a screenshot of the HTML page in headless Chromium (``apt-get install chromium``); without it only the
page is written.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
from pathlib import Path

from scipy import stats

RESULTS = Path(__file__).parent / "results" / "sampler_hypervolume_table.json"
OUTPUT = Path(__file__).parent.parent / "docs" / "sampler-hypervolume.html"
COLOURS = {"random": "#555555", "local": "#d62728", "local+mo-asha": "#ff7f0e", "tpe": "#1f77b4",
           "evolution": "#2ca02c", "nsga2": "#9467bd", "random+mo-asha": "#8c564b", "gp": "#e377c2"}


def volume_at(curve: list, epochs: float) -> float:
    """A run's hypervolume once it had spent ``epochs`` (0 before its first evaluation)."""
    volume = 0.0
    for spent, value in curve:
        if spent > epochs:
            break
        volume = value
    return volume


def bands(curves: list[list], steps: list[int], epochs: int) -> tuple[list[float], list[float], list[float]]:
    means, lows, highs = [], [], []
    for step in steps:
        values = [volume_at(curve, step * epochs) for curve in curves]
        mean = statistics.fmean(values)
        half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        means.append(mean)
        lows.append(mean - half)
        highs.append(mean + half)
    return means, lows, highs


def figure(results: dict, curves: list[dict]):
    import plotly.graph_objects as go

    settings = results["settings"]
    epochs, budget = settings["epochs"], max(settings["budgets"])
    shown = go.Figure()
    for method in settings["samplers"]:
        mine = [run["curve"] for run in curves if run["sampler"] == method]
        spent = min(curve[-1][0] for curve in mine) / epochs  # drawn only as far as every run went
        steps = [step for step in range(5, budget + 1) if step <= spent]
        means, lows, highs = bands(mine, steps, epochs)
        colour = COLOURS.get(method, "#17becf")
        shown.add_trace(go.Scatter(x=steps + steps[::-1], y=highs + lows[::-1], fill="toself", fillcolor=colour,
                                   opacity=0.18, line={"width": 0}, hoverinfo="skip", showlegend=False))
        shown.add_trace(go.Scatter(x=steps, y=means, name=method, line={"color": colour, "width": 2}))
    shown.add_hline(y=settings["true_front_hypervolume"], line_dash="dot",
                    annotation_text="the table's true Pareto front", annotation_position="bottom right")
    meta = settings["table_meta"]
    shown.update_layout(
        title=f"Hypervolume (validation accuracy x MACs) on the {meta['space']} / {meta['data']} table, "
              f"{settings['seeds']} seeds, mean and 95% band",
        xaxis={"title": f"compute, in full evaluations ({epochs} epochs each)", "type": "log"},
        yaxis_title="hypervolume",
        template="plotly_white", width=1000, height=560, legend={"x": 0.78, "y": 0.05})
    return shown


def screenshot(page: Path, png: Path, width: int = 1000, height: int = 560) -> bool:
    """The page photographed by headless Chromium; False where there is none (plot_outcome.py uses it too)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return False
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png.resolve()}", f"--window-size={width},{height}", "--virtual-time-budget=5000",
                    page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=OUTPUT, help="the HTML page; the PNG goes beside it")
    options = parser.parse_args()
    results = json.loads(options.results.read_text())
    curves = json.loads(options.results.with_name(options.results.stem + "_curves.json").read_text())
    options.out.parent.mkdir(parents=True, exist_ok=True)
    figure(results, curves).write_html(options.out, include_plotlyjs=True, full_html=True,
                                       config={"displayModeBar": False})
    png = options.out.with_suffix(".png")
    print(f"saved {options.out}" + (f" and {png}" if screenshot(options.out, png) else " (no chromium: no PNG)"))


if __name__ == "__main__":
    main()
