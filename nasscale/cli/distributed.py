"""``nasscale rerun``: retrain one trial from its record and compare with the recorded score."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from nasscale.cli.output import console
from nasscale.search.config import DEFAULT_STORAGE


def rerun(
    study: Annotated[str, typer.Option("--study", help="Study name.")],
    trial: Annotated[int, typer.Option(help="Trial number.")],
    storage: Annotated[str, typer.Option(help="Optuna storage URL.")] = DEFAULT_STORAGE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Retrain one trial from its record (architecture, seed, proxy settings) and compare the accuracy with the
    recorded one, epoch by epoch (a zero-cost-scored trial is scored again). On a CPU with one thread they are
    identical."""
    # optuna: imported where needed, so this module loads without it
    from nasscale.search.backends.rerun import rerun_trial

    result = rerun_trial(study, trial, storage)
    if as_json:
        print(json.dumps(result, indent=2))  # plain print: scripts parse this
        return
    verdict = "[green]identical[/]" if result["identical"] else "[red]DIFFERENT[/]"
    if not result["epochs"]:  # scored by a zero-cost proxy, not trained: one number to compare
        console.print(f"Trial {trial} of study {study!r} re-scored with {result['evaluator']} (seed "
                      f"{result['seed']}): recorded {result['recorded_accuracy']!r}, re-run "
                      f"{result['rerun_accuracy']!r}", highlight=False)
        console.print(f"arch_id {result['arch_id']}: re-run {verdict} to the recorded score "
                      f"({result['seconds']:.1f} s)")
        return
    table = Table(title=f"Trial {trial} of study {study!r} re-run (seed {result['seed']}, "
                        f"{result['threads']} thread{'s' if result['threads'] > 1 else ''})")
    for column in ("epoch", "recorded accuracy", "re-run accuracy"):
        table.add_column(column, justify="right")
    for row in result["epochs"]:
        recorded = "" if row["recorded"] is None else f"{row['recorded']:.6f}"
        table.add_row(str(row["epoch"]), recorded, f"{row['rerun']:.6f}")
    console.print(table)
    console.print(f"arch_id {result['arch_id']}: re-run {verdict} to the recorded accuracies "
                  f"({result['seconds']:.1f} s)")
