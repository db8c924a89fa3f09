"""``nasscale latency``, ``nasscale latency-table`` and ``nasscale proxies``: hardware-aware cost and zero-cost
proxies on the command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nasscale.cli.output import console, error_console, print_json
from nasscale.evaluate.latency_calibration import build_latency_table, validate_predictor
from nasscale.evaluate.latency_table import (
    DEFAULT_CALIBRATION,
    DEFAULT_TABLE_REPEATS,
    load_latency_table,
    predict_latency,
)
from nasscale.presets.registry import resolve_arch
from nasscale.space.parsing import load_space

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
ThreadsOption = Annotated[int, typer.Option(min=1, help="Torch threads while timing [1].")]
ClockOption = Annotated[str, typer.Option(help="wall: elapsed time; cpu: the thread's CPU time, steadier on a "
                                               "shared machine (1 thread, cpu device only) [wall].")]


def _progress_bars(*, quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=error_console, disable=quiet, transient=True)


# ------------------------------------------------------------------------------------------------- latency


def latency(
    target: Annotated[str, typer.Argument(help="A preset name or an architecture file (.yaml/.json).")],
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size [1].")] = 1,
    threads: ThreadsOption = 1,
    device: Annotated[str, typer.Option(help="cpu | cuda [cpu].")] = "cpu",
    resolution: Annotated[int | None, typer.Option(help="Override the input resolution.")] = None,
    in_channels: Annotated[int | None, typer.Option(help="Override the input channels (1 = grayscale).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Override the number of classes.")] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed forward passes [20].")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed forward passes first [3].")] = 3,
    clock: ClockOption = "wall",
    table: Annotated[Path | None, typer.Option(help="Also predict the latency from this latency table.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Measured inference latency of an architecture: median, 10th-90th percentile and fastest of timed forward
    passes in eval mode, after warm-up."""
    from nasscale.evaluate.latency import measure_arch_latency  # torch: only when timing

    arch = resolve_arch(target, resolution=resolution, num_classes=num_classes, in_channels=in_channels)
    loaded = load_latency_table(table) if table is not None else None  # a bad table fails before timing
    predicted = predict_latency(loaded, arch) if loaded is not None else None
    result = measure_arch_latency(arch, batch_size=batch, threads=threads, device=device, repeats=repeats,
                                  warmup=warmup, clock=clock)
    report = result.to_dict() | ({"predicted_ms": predicted} if predicted is not None else {})
    if as_json:
        print_json(report)
        return
    console.print(f"{target}: arch_id {arch.arch_id}, {arch.resolution}x{arch.resolution}, batch {batch}, "
                  f"{threads} thread(s), {device}, {clock} clock", highlight=False)
    console.print(f"median {result.median_ms:.3f} ms (p10 {result.p10_ms:.3f}, p90 {result.p90_ms:.3f}, fastest "
                  f"{result.min_ms:.3f}) over {repeats} runs after {warmup} warm-up", highlight=False)
    if predicted is not None:  # a table holds fastest runs: compare like with like
        console.print(f"predicted from {table}: {predicted:.3f} ms ({predicted / result.min_ms - 1:+.1%} against the "
                      "fastest run)", highlight=False)


# ------------------------------------------------------------------------------------------- latency-table


def latency_table(
    space: Annotated[str, typer.Option(help="A built-in space name or a space YAML file.")],
    out: Annotated[Path, typer.Option(help="Where to write the table (JSON).")],
    in_channels: Annotated[int, typer.Option(min=1, help="Input channels of the architectures [3].")] = 3,
    num_classes: Annotated[int, typer.Option(min=1, help="Classes of the architectures [1000].")] = 1000,
    resolution: Annotated[int | None, typer.Option(help="Fix the resolution [every one of the space].")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size [1].")] = 1,
    threads: ThreadsOption = 1,
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs of each part and each measured architecture, "
                                                     "interleaved; the fastest counts [25].")] = DEFAULT_TABLE_REPEATS,
    clock: ClockOption = "wall",
    calibration: Annotated[int, typer.Option(min=0, help="Architectures measured whole to fit the interaction "
                                                         "factor (0: none) [40].")] = DEFAULT_CALIBRATION,
    validate: Annotated[int, typer.Option(min=0, help="Then measure this many sampled architectures end to end "
                                                      "against their prediction [0].")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the validation sample [0].")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Time every distinct stem, block and head a space can produce into a latency lookup table (each part's
    fastest of --repeats runs, interleaved with the others'); an architecture's latency is then predicted as the
    sum of its parts, without building it."""
    search_space = load_space(space)
    with _progress_bars(quiet=as_json) as bars:
        task = bars.add_task(f"timing parts of {search_space.name}", total=None)

        def timed(done: int, total: int, key: str) -> None:
            bars.update(task, completed=done, total=total)

        table = build_latency_table(search_space, in_channels=in_channels, num_classes=num_classes,
                                    resolution=resolution, batch_size=batch, threads=threads, repeats=repeats,
                                    clock=clock, calibration=calibration, on_progress=timed)
        out.parent.mkdir(parents=True, exist_ok=True)
        table.save(out)
        validation = None
        if validate:
            check = bars.add_task(f"measuring {validate} sampled architectures", total=None)
            validation = validate_predictor(table, search_space, validate, seed=seed, repeats=repeats,
                                            on_progress=lambda done, total: bars.update(check, completed=done,
                                                                                        total=total))
    report: dict[str, Any] = {"space": table.space, "out": str(out), "parts": len(table.entries),
                              "build_seconds": table.build_seconds, "overhead_ms": table.overhead_ms,
                              "interaction_factor": table.interaction_factor, "clock": table.clock,
                              "threads": table.threads, "batch_size": table.batch_size}
    if validation is not None:
        report["validation"] = validation.to_dict()
    if as_json:
        print_json(report)
        return
    console.print(f"wrote {out}: {report['parts']} parts of space {table.space} timed in "
                  f"{table.build_seconds:.1f} s ({table.clock} clock, {table.threads} thread(s), batch "
                  f"{table.batch_size}); interaction factor {table.interaction_factor:.3f}, overhead "
                  f"{table.overhead_ms:.3f} ms", highlight=False)
    if validation is not None:
        _print_validation(validation)


def _print_validation(validation: Any) -> None:
    from rich.table import Table


    table = Table(title=f"Predicted against measured, {len(validation.rows)} held-out sampled architectures "
                        f"({validation.repeats} interleaved runs each; machine speed factor {validation.speed:.3f})")
    for column in ("predictor", "against", "within +-10%", "median |error|", "median error (bias)"):
        table.add_column(column, justify="left" if column in ("predictor", "against") else "right")
    for label, against, options in (("calibrated", "fastest run", {}),
                                    ("sum of parts", "fastest run", {"calibrated": False}),
                                    ("calibrated", "fastest run / speed factor", {"for_speed": True}),
                                    ("calibrated", "median run", {"against": "median"})):
        figures = validation.summary(**options)
        table.add_row(label, against, f"{figures['share_within_10_percent']:.0%}",
                      f"{figures['median_absolute_error']:.1%}", f"{figures['median_signed_error']:+.1%}")
    console.print(table)


# ------------------------------------------------------------------------------------------------- proxies


def proxies(
    space: Annotated[str, typer.Option(help="A built-in space name or a space YAML file.")],
    data: Annotated[str, typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR.")],
    count: Annotated[int, typer.Option("-n", "--count", min=2, help="Architectures to sample and train [50].")] = 50,
    epochs: Annotated[int, typer.Option(min=1, help="Proxy training epochs per architecture [3].")] = 3,
    proxy_resolution: Annotated[int, typer.Option(min=1, help="Training and scoring image size [32].")] = 32,
    max_train_samples: Annotated[int | None, typer.Option(min=1, help="Train on at most this many images.")] = None,
    max_validation_samples: Annotated[int | None, typer.Option(min=1, help="Score accuracy on at most this many "
                                                                          "validation images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sample, the data subset and the training [0].")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads [1].")] = 1,
    proxy: Annotated[str | None, typer.Option(help="Comma-separated proxies to score [all: synflow, grad_norm, "
                                                   "snip, naswot, jacob_cov, params, macs].")] = None,
    proxy_batch: Annotated[int, typer.Option(min=2, help="Images in the proxies' batch [64].")] = 64,
    out: Annotated[Path | None, typer.Option(help="Also write the full results (JSON) here.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """How well each zero-cost proxy ranks architectures: sample, proxy-train and score each, then Spearman's rho
    and Kendall's tau of every proxy (and of params and MACs) against the trained accuracy."""
    # numpy: imported where needed, so this module loads without it
    # torch: imported where needed, so this module loads without it
    from nasscale.evaluate.proxy_validation import validate_proxies
    from nasscale.evaluate.zero_cost import proxy_names

    names = proxy_names(proxy)  # an unknown name fails before any data is loaded
    with _progress_bars(quiet=as_json) as bars:
        task = bars.add_task(f"training {count} architectures of {space}", total=count)
        result = validate_proxies(space, data, n=count, epochs=epochs, seed=seed, proxy_resolution=proxy_resolution,
                                  max_train_samples=max_train_samples, max_validation_samples=max_validation_samples,
                                  threads=threads, proxies=names,
                                  proxy_batch_size=proxy_batch,
                                  on_progress=lambda done, total, record: _architecture_done(
                                      bars, task, done, total, record, quiet=as_json))
    report = result.to_dict()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    if as_json:
        print_json(report)
        return
    _print_correlations(result, out)


def _architecture_done(bars: Any, task: Any, done: int, total: int, record: Any, *, quiet: bool) -> None:
    """Advance the bar; where stderr is a log file rather than a terminal (no bar is drawn), write a line."""
    bars.update(task, completed=done)
    if quiet or error_console.is_terminal:
        return
    accuracy = "failed" if record.accuracy is None else f"accuracy {record.accuracy:.4f}"
    error_console.print(f"architecture {done}/{total} ({record.arch_id}): {accuracy}, trained in "
                        f"{record.train_seconds:.1f} s", highlight=False)


def _print_correlations(result: Any, out: Path | None) -> None:
    from rich.table import Table


    trained = [record.accuracy for record in result.records if record.accuracy is not None]
    title = (f"Rank correlation with trained accuracy: {result.space} on {result.data}, {len(trained)} of "
             f"{result.architectures} trained for {result.epochs} epoch(s) at {result.proxy_resolution} px")
    table = Table(title=title)
    for column in ("proxy", "kind", "Spearman rho", "Kendall tau", "architectures", "seconds each"):
        table.add_column(column, justify="left" if column in ("proxy", "kind") else "right")
    for row in result.correlations:
        table.add_row(row.proxy, "baseline" if row.baseline else "zero-cost", _signed(row.spearman_rho),
                      _signed(row.kendall_tau), str(row.architectures), f"{row.mean_seconds:.2f}")
    console.print(table)
    if trained:
        console.print(f"accuracy {min(trained):.4f} to {max(trained):.4f}; {result.seconds:.0f} s in all"
                      + (f"; wrote {out}" if out is not None else ""), highlight=False)


def _signed(value: float) -> str:
    return "n/a" if value != value else f"{value:+.3f}"
