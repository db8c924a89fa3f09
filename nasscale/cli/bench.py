"""``nasscale bench build`` and ``nasscale bench info``: a tabular NAS benchmark of a space on the user's data,
and what it says (the true Pareto front, rank stability, proxy correlations)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nasscale.cli.output import JsonFlag, console, error_console, print_json, progress_bars
from nasscale.evaluate.benchmark_table import BuildRequest, load_table
from nasscale.search.benchmark_info import describe
from nasscale.units import format_count

app = typer.Typer(help="Tabular benchmarks: every architecture of a space trained once, answered in microseconds.",
                  no_args_is_help=True, rich_markup_mode=None)

DEFAULTS = BuildRequest(space="tiny", out=Path("."))  # the one place the build's defaults are written


@app.command()
def build(
    space: Annotated[str, typer.Option(help="A built-in space or a YAML file.")],
    out: Annotated[Path, typer.Option(help="The table file (SQLite); an existing one is resumed.")],
    data: Annotated[str, typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR")]
    = DEFAULTS.data,
    resolution: Annotated[int | None, typer.Option(min=1, help="Deployment resolution [the data's native size].")]
    = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs per architecture, each recorded.")] = DEFAULTS.epochs,
    batch_size: Annotated[int, typer.Option(min=1)] = DEFAULTS.batch_size,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = DEFAULTS.learning_rate,
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Training images per architecture.")]
    = DEFAULTS.max_train_samples,
    max_validation_samples: Annotated[int | None, typer.Option(min=1)] = DEFAULTS.max_validation_samples,
    max_test_samples: Annotated[int | None, typer.Option(min=1, help="[the whole test set]")] = None,
    sample: Annotated[int | None, typer.Option(min=1, help="Train N sampled architectures of a space too big to "
                                                           "enumerate.")] = None,
    split_seed: int = 0,
    seed: int = 0,
    workers: Annotated[int, typer.Option(min=1, help="Builder processes, one torch thread each.")] = 1,
    proxies: Annotated[bool, typer.Option("--proxies/--no-proxies", help="Also score every zero-cost proxy.")]
    = True,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train every architecture of a space once (or a seeded sample of a big one) with one recipe and store its
    learning curve, test accuracy, cost, latency and zero-cost scores. Resumes after a kill."""
    from nasscale.evaluate.benchmark_build import build_table, plan_build  # numpy: not for --help

    request = BuildRequest(space=space, data=data, out=out, resolution=resolution, epochs=epochs,
                           batch_size=batch_size, learning_rate=learning_rate, max_train_samples=max_train_samples,
                           max_validation_samples=max_validation_samples, max_test_samples=max_test_samples,
                           sample=sample, split_seed=split_seed, seed=seed, workers=workers, proxies=proxies)
    plan = plan_build(request)
    error_console.print(f"{plan.space.name} at {plan.resolution} px on {data}: {len(plan.archs)} architectures, "
                        f"{len(plan.done)} already in {out}", highlight=False)
    with progress_bars(quiet=quiet, transient=False) as bars:
        task = bars.add_task("training", total=len(plan.archs), completed=len(plan.done))
        written = build_table(request, plan, lambda done, total, row: bars.update(task, completed=done))
    console.print(f"wrote {written} architectures; {out} holds {len(plan.done) + written} of {len(plan.archs)}",
                  highlight=False)


@app.command()
def info(
    table_file: Annotated[Path, typer.Argument(help="A table written by 'nasscale bench build'.")],
    as_json: JsonFlag = False,
) -> None:
    """Size, the true Pareto front of (validation accuracy, MACs) and its hypervolume, rank stability between
    epochs and the rank correlation of every zero-cost proxy, params and MACs with final accuracy."""
    table = load_table(table_file)
    summary = describe(table)
    if as_json:
        print_json({"file": str(table_file), "meta": table.meta} | summary.as_dict())
        return
    meta = table.meta
    console.print(f"{table_file}: space {meta['space']} at {meta['resolution']} px on {meta['data']}, "
                  f"{summary.architectures} of {summary.expected} architectures, {summary.epochs} epochs each "
                  f"({summary.build_seconds / 3600:.2f} h of training)", highlight=False)
    console.print(f"true Pareto front: {len(summary.front)} architectures, hypervolume {summary.hypervolume:.4f} "
                  f"(validation accuracy x MACs / largest, reference (0, 1))", highlight=False)
    console.print("Kendall tau of epoch k against the last: "
                  + ", ".join(f"{epoch}: {tau:.3f}" for epoch, tau in enumerate(summary.epoch_rank_stability, 1)),
                  highlight=False)
    console.print(f"best: {summary.best.arch_id} validation {summary.best.final_accuracy:.4f}, test "
                  f"{summary.best.test_accuracy:.4f}, {format_count(summary.best.macs)} MACs", highlight=False)
    correlations = Table(title="rank correlation with final validation accuracy")
    for column in ("predictor", "Spearman", "Kendall", "architectures"):
        correlations.add_column(column, justify="left" if column == "predictor" else "right")
    for item in summary.correlations:
        correlations.add_row(item.name, f"{item.spearman:+.3f}", f"{item.kendall:+.3f}", str(item.architectures))
    console.print(correlations)
