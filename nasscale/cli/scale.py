"""``nasscale scale``: parse the flags into a ``ScaleRequest``, run ``nasscale.scale.pipeline`` and print the
ladder (tables, or ``--json``). The pipeline checks, computes and records; this module only prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nasscale.units import format_count, parse_count

if TYPE_CHECKING:
    from nasscale.scale.pipeline import ScaleOutcome, ScaleRequest
from nasscale.cli.output import console, error_console, print_json
from nasscale.search.config import DEFAULT_STORAGE
from nasscale.search.record import LADDER_ATTR, LADDER_META_ATTR
from nasscale.spec.cost import cost

# -------------------------------------------------------------------------------------------- rendering


def print_outcome(outcome: ScaleOutcome, request: ScaleRequest, console: Any) -> None:
    base_cost = cost(outcome.baseline.arch)
    accuracy = (f", validation accuracy {outcome.baseline.accuracy:.4f}" if outcome.baseline.accuracy is not None
                else "")
    console.print(f"base {outcome.baseline.name}: {format_count(base_cost.params)} params, "
                  f"{format_count(base_cost.macs)} MACs at {outcome.baseline.arch.resolution}{accuracy}",
                  highlight=False)
    if outcome.coefficients is not None:
        console.print(f"coefficients (alpha, beta, gamma) = {_coefficients_text(outcome.coefficients)}: "
                      f"{outcome.coefficients_source}", highlight=False)
    if request.dry_run:
        print_grid(outcome, console)
    elif outcome.grid is not None and any(row.accuracy is not None for row in outcome.grid.rows):
        print_evaluated(outcome.grid, console)
    print_ladder(outcome, request, console)


def print_grid(outcome: ScaleOutcome, console: Any) -> None:
    """The solver's feasible candidates, best first. A rich table rather than pandas: importing pandas alone
    would cost a B0 dry run a third of a second."""
    if outcome.grid_note:
        console.print(f"no solver grid: {outcome.grid_note}", highlight=False)
    if outcome.grid is not None:
        grid = outcome.grid
        feasible = grid.ranked()
        title = (f"Solver grid: {len(feasible)} of {len(grid.rows)} candidates within {grid.tolerance:.0%} of "
                 f"{grid.target_ratio:g}x the base's MACs (step {grid.step:g}), closest first")
        columns: tuple[str, ...] = ("alpha", "beta", "gamma", "a*b^2*g^2", "res", "layers per stage",
                                    "channels per stage", "params", "MACs", "MAC ratio", "deviation")
        console.print(_grid_table(title, columns, [
            (f"{row.alpha:.2f}", f"{row.beta:.2f}", f"{row.gamma:.2f}", f"{row.ideal_product:.3f}", str(row.resolution),
             _joined(row.stage_layers), _joined(row.stage_channels), format_count(row.params),
             format_count(row.macs), f"{row.mac_ratio:.3f}", f"{row.deviation:+.2%}") for row in feasible]))
    for phi, result in outcome.allocations:
        feasible = result.ranked()
        title = (f"phi {phi}: {len(feasible)} of {len(result.rows)} profile x width candidates within "
                 f"{result.tolerance:.0%} of {format_count(result.target_macs)} MACs, lightest first")
        columns = ("profile", "width", "res", "layers per stage", "channels per stage", "params", "MACs", "deviation")
        console.print(_grid_table(title, columns, [
            (row.profile, f"{row.width:g}", str(row.resolution), _joined(row.stage_layers),
             _joined(row.stage_channels), format_count(row.params), format_count(row.macs), f"{row.deviation:+.2%}")
            for row in feasible]))


def _grid_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column, justify="left" if column == "profile" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _joined(values: Iterable[int]) -> str:
    return ",".join(map(str, values))


def print_evaluated(grid: Any, console: Any) -> None:
    from rich.table import Table

    trained = sorted((row for row in grid.rows if row.accuracy is not None), key=grid.rank_key)
    table = Table(title=f"Solver: the {len(trained)} feasible candidates closest to {grid.target_ratio:g}x, trained "
                        "on the proxy task, most accurate on the validation split first")
    for column in ("alpha, beta, gamma", "resolution", "MACs", "deviation", "val_accuracy", ""):
        table.add_column(column, justify="left" if column.startswith("alpha") else "right")
    for row in trained:
        table.add_row(_coefficients_text(row.coefficients), str(row.resolution), format_count(row.macs),
                      f"{row.deviation:+.2%}", f"{row.accuracy:.4f}", "best" if row == grid.best else "")
    console.print(table)


def print_ladder(outcome: ScaleOutcome, request: ScaleRequest, console: Any) -> None:
    from rich.table import Table

    target = "--macs" if request.target_macs else "base MACs x 2^phi"
    kind = "non-uniform (EfficientNetV2)" if request.non_uniform else (
        "budget-exact" if request.budget_exact else "raw compound rule")
    table = Table(title=f"{kind} ladder of {outcome.baseline.name}, target {target}"
                        + (" (analytic, dry run)" if request.dry_run else ""))
    columns = ["phi", "profile" if request.non_uniform else "coefficients", "res", "width", "layers per stage",
               "params", "MACs", "target", "deviation", "method"]
    columns += ["val_accuracy", "test_accuracy"] if outcome.evaluation else []
    columns += ["latency ms"] if request.latency else []
    columns += ["released", "rel. MACs", "rel. dev"] if outcome.released else []
    for column in columns:
        table.add_column(column, justify="left" if column in ("profile", "coefficients", "method") else "right",
                         no_wrap=True)
    for record in outcome.step_records():
        table.add_row(*_ladder_cells(record, request, outcome))
    console.print(table)
    if outcome.released:
        console.print("released: EfficientNet's B1-B7 at their resolution; rel. dev against B0 x 2^phi",
                      highlight=False)


def _ladder_cells(record: dict[str, Any], request: ScaleRequest, outcome: ScaleOutcome) -> list[str]:
    cells = [str(record["phi"]),
             record["profile"] if request.non_uniform else _coefficients_text(record["coefficients"]),
             str(record["resolution"]), f"{record['width']:.3f}", _joined(record["stage_layers"]),
             format_count(record["params"]), format_count(record["macs"]), format_count(record["target_macs"]),
             f"{record['deviation']:+.2%}", record["method"]]
    if outcome.evaluation:
        cells += ["failed" if record[key] is None else f"{record[key]:.4f}" for key in ("accuracy", "test_accuracy")]
    if request.latency:
        cells.append(f"{record['latency']['median_ms']:.1f}")
    if outcome.released:
        released = "released_name" in record
        name = record["released_name"].removeprefix("efficientnet_").upper() if released else ""
        cells += [f"{name} @{record['released_resolution']}" if released else "",
                  format_count(record["released_macs"]) if released else "",
                  f"{record['released_deviation']:+.1%}" if released else ""]
    return cells


def _coefficients_text(coefficients: Sequence[float]) -> str:
    return ",".join(f"{value:g}" for value in coefficients)


# ------------------------------------------------------------------------------------------------ command


def scale(
    base: Annotated[str | None, typer.Option(help="Baseline: a preset name or an architecture file.")] = None,
    study: Annotated[str | None, typer.Option(help="Baseline: a search study's best trial by proxy accuracy "
                                                   "(or --trial N).")] = None,
    trial: Annotated[int | None, typer.Option(help="With --study: scale this trial instead of the best.")] = None,
    storage: Annotated[str, typer.Option(help="Optuna storage URL of --study and --record-study.")] = DEFAULT_STORAGE,
    phi: Annotated[str, typer.Option(help="Scaling step: one value such as 3 or a range such as 1..7; step phi "
                                          "aims at base MACs x 2^phi.")] = "1",
    coefficients: Annotated[str | None, typer.Option(help="alpha,beta,gamma (depth, width, resolution), each at "
                                                          "least 1, e.g. 1.2,1.1,1.15.")] = None,
    solve: Annotated[bool, typer.Option("--solve", help="Solve alpha, beta, gamma on a grid (MACs within "
                                        "--tolerance of 2x the base). Default with --study; with --base the "
                                        "default is EfficientNet's 1.2,1.1,1.15.")] = False,
    macs: Annotated[str | None, typer.Option(help="Explicit MAC target of a single --phi, e.g. 1.8G.")] = None,
    budget_exact: Annotated[bool, typer.Option(help="Re-solve each step's resolution (and width if need be) to "
                                                    "land within 2% of its target; off: the raw compound "
                                                    "rule.")] = True,
    resolution_multiple: Annotated[int, typer.Option(min=1, help="Resolutions are multiples of this.")] = 1,
    step: Annotated[float, typer.Option(help="Solver grid step of alpha, beta, gamma.")] = 0.05,
    tolerance: Annotated[float, typer.Option(help="Solver feasibility: MACs within this fraction of 2x the "
                                                  "base.")] = 0.05,
    max_coefficient: Annotated[float, typer.Option(help="Largest alpha, beta, gamma on the solver grid.")] = 2.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Analytic only: list the solver's feasible grid and "
                                          "the ladder's costs; trains, measures and writes nothing.")] = False,
    non_uniform: Annotated[bool, typer.Option("--non-uniform", help="EfficientNetV2-style: each step picks a "
                                              "per-stage depth profile and a width under --max-resolution.")] = False,
    max_resolution: Annotated[int | None, typer.Option(min=1, help="Resolution cap: 480 with --non-uniform, none "
                                                               "otherwise.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write DIR/phi<k>.yaml per step, DIR/ladder.json and "
                                                  "DIR/grid.csv (the solver's whole grid).")] = None,
    latency: Annotated[bool, typer.Option(help="Measure each step's CPU latency: batch 1, eval mode, median of "
                                               "--latency-repeats, --threads threads.")] = False,
    latency_repeats: Annotated[int, typer.Option(min=1, help="Timed runs per step.")] = 10,
    latency_warmup: Annotated[int, typer.Option(min=0, help="Untimed runs before them.")] = 2,
    record_study: Annotated[str | None, typer.Option(help="Record the ladder on this study of --storage "
                                                          "(created if missing) instead of --study's.")] = None,
    evaluate: Annotated[bool | None, typer.Option("--evaluate/--no-evaluate", help="Proxy-train the solver's "
                                                  "candidates and every step. Default: on with --study, off with "
                                                  "--base.")] = None,
    max_candidates: Annotated[int, typer.Option(min=1, help="Evaluate only the K feasible candidates closest to "
                                                            "the target (non-uniform: the K lightest).")] = 6,
    data: Annotated[str | None, typer.Option(help="Proxy data: digits, fashion-mnist:DIR, imagefolder:DIR, "
                                                  "cifar10:DIR. Default: the study's, else digits.")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Proxy epochs. Default: the study's, else 3.")] = None,
    proxy_resolution: Annotated[int | None, typer.Option(min=1, help="Proxy image size of the base; a candidate "
                                                         "trains at this x its resolution / the base's. Default: "
                                                         "the study's, else 32.")] = None,
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Train on at most this many images.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the split and of every candidate's training.")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads for training and latency. Default: "
                                                            "the study's, else 1.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Scale a baseline into a ladder of bigger models: compound (EfficientNet) or per-stage (EfficientNetV2).

    Step phi aims at base MACs x 2^phi. With --study (or --evaluate), the solver's candidates are trained with
    the search's proxy evaluator and the most accurate wins; only the --max-candidates closest to the target are
    trained, so an evaluated grid takes minutes. With --study the ladder is stored on that study, replacing an
    earlier one: user attribute "nasscale_ladder" holds one row per step (architecture, MACs, params, accuracy,
    latency) and "nasscale_ladder_meta" the base, coefficients and solver, so dashboards draw scaling curves from
    the study alone; --record-study NAME stores them on study NAME instead. Nothing is recorded or written until
    everything is computed.
    """
    if base is None and study is None:
        from nasscale.search.results import sole_study  # optuna: only when a study is read

        study = sole_study(storage)
        if not as_json:
            error_console.print(f"no --base or --study: scaling the best trial of study {study!r}, the only one in "
                                f"{storage}", highlight=False, soft_wrap=True)
    overrides = {"data": data, "epochs": epochs, "proxy_resolution": proxy_resolution,
                 "max_train_samples": max_train_samples, "seed": seed, "threads": threads}
    # The pipeline reads studies (optuna) and trains (torch): imported here, so --help loads neither.
    from nasscale.scale.pipeline import (
        ScaleRequest,
        check_combinations,
        evaluation_config,
        load_baseline,
        output_files,
        parse_coefficients,
        parse_phis,
        payload,
        record_in_study,
        run_scale,
        write_files,
    )

    request = ScaleRequest(
        base=base, study=study, trial=trial, storage=storage, phis=parse_phis(phi),
        coefficients=parse_coefficients(coefficients) if coefficients is not None else None, solve=solve,
        target_macs=parse_count(macs, name="--macs") if macs is not None else None, budget_exact=budget_exact,
        resolution_multiple=resolution_multiple, step=step, tolerance=tolerance, max_coefficient=max_coefficient,
        dry_run=dry_run, non_uniform=non_uniform, max_resolution=max_resolution, out=out, latency=latency,
        latency_repeats=latency_repeats, latency_warmup=latency_warmup, record_study=record_study,
        evaluate=(study is not None if evaluate is None else evaluate) and not dry_run,
        max_candidates=max_candidates, evaluation_overrides=overrides, quiet=as_json)
    check_combinations(request, evaluate)
    baseline = load_baseline(request)
    config = evaluation_config(request, baseline)

    def report(line: str) -> None:
        if not request.quiet:
            error_console.print(line, highlight=False, soft_wrap=True)

    outcome = run_scale(request, baseline, config, report)
    data_out = payload(outcome, request)
    files = output_files(outcome, data_out) if request.out is not None else {}
    recorded = record_in_study(request, baseline, data_out) if request.record_target else None
    written = write_files(request.out, files) if files and request.out is not None else []  # files need --out
    if as_json:
        print_json(data_out | {"recorded": recorded, "files": written})
        return
    print_outcome(outcome, request, console)
    if recorded:
        console.print(f"recorded the ladder on study {recorded['study']!r} ({recorded['storage']}) as user "
                      f"attributes {LADDER_ATTR} and {LADDER_META_ATTR}", highlight=False)
    if written:
        console.print(f"wrote {len(written)} files to {request.out}: " + ", ".join(Path(p).name for p in written),
                      highlight=False)
