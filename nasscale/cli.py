"""The ``nasscale`` command line. Each command parses its flags, calls one library function and prints
the result: a table for people, JSON with ``--json`` for scripts. Bad input is one line on stderr and
exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from nasscale import cli_distributed, cli_hardware, cli_interchange, cli_report, cli_scale
from nasscale.errors import NasscaleError
from nasscale.units import format_count

app = typer.Typer(
    help="Neural architecture search and compound scaling for CNNs.\n\n"
    "MACs are multiply-adds of convolutions and linear layers at batch 1: the number the "
    "EfficientNet, MnasNet and ConvNeXt papers and torchvision call FLOPs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts show defaults as [mnas]; rich markup would swallow the brackets
)
# Pipes and CI logs get a wide fixed width so tables are not squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
error_console = Console(stderr=True)
state = {"debug": False}

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")] = False,
) -> None:
    state["debug"] = debug


def print_json(data: Any) -> None:
    # Plain print, not rich: scripts parse this and must not get colour codes or wrapping.
    print(json.dumps(data, indent=2))


# --------------------------------------------------------------------------------------------- presets


@app.command()
def presets(
    as_json: JsonFlag = False,
    check: Annotated[bool, typer.Option("--check", help="Also build each model and count it with fvcore and "
                                                         "torch (slow for the large ones).")] = False,
) -> None:
    """List the reference architectures with their analytic cost next to the published figures."""
    from nasscale.presets import preset_rows

    rows = preset_rows(check=check)
    if as_json:
        print_json(rows)
        return
    table = Table(title="Presets: analytic cost at the reference resolution, 1000 classes")
    for column in ("preset", "family", "res", "params", "reference", "MACs", "reference MACs", "match"):
        table.add_column(column, justify="left" if column in ("preset", "family") else "right")
    if check:
        table.add_column("built = fvcore = torch", justify="center")
    for row in rows:
        cells = [row["name"], row["family"], str(row["resolution"]), f"{row['params']:,}",
                 f"{row['reference_params']:,}", f"{row['macs']:,}", f"{row['reference_macs']:,}",
                 "[green]yes[/]" if row["matches_reference"] else "[red]NO[/]"]
        if check:
            cells.append("[green]yes[/]" if row["counts_agree"] else "[red]NO[/]")
        table.add_row(*cells)
    console.print(table)
    console.print("Rounded references (e.g. 4.4555 GMACs) match within half their last digit; "
                  "mnasnet_a1 within 1% of the paper.")


# ------------------------------------------------------------------------------------------------ cost


@app.command()
def cost(
    target: Annotated[str, typer.Argument(help="A preset name or an architecture file (.yaml/.json).")],
    resolution: Annotated[int | None, typer.Option(help="Override the input resolution.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Override the number of classes.")] = None,
    in_channels: Annotated[int | None, typer.Option(help="Override the input channels (1 = grayscale).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Also build the model and count it with fvcore and "
                                                         "torch's FlopCounterMode.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Parameters and MACs of an architecture, from its spec alone (no model is built)."""
    from nasscale.cost import cost_report
    from nasscale.presets import resolve_arch

    arch = resolve_arch(target, resolution=resolution, num_classes=num_classes, in_channels=in_channels)
    report = cost_report(arch, check=check)
    if as_json:
        print_json(report)
        return
    console.print(f"{target}: arch_id {report['arch_id']}, {arch.resolution}x{arch.resolution}, "
                  f"{arch.in_channels} in, {arch.num_classes} classes", highlight=False)
    table = Table()
    for column in ("part", "params", "MACs"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for part in report["parts"]:
        table.add_row(part["name"], f"{part['params']:,}", f"{part['macs']:,}")
    table.add_row("[bold]total[/]", f"[bold]{report['params']:,}[/]", f"[bold]{report['macs']:,}[/]")
    console.print(table)
    if check:
        agree = report["counts_agree"]
        console.print(f"built params {report['params_built']:,}, fvcore MACs {report['macs_fvcore']:,}, "
                      f"torch MACs {report['macs_torch']:,}: "
                      + ("[green]all four counts agree[/]" if agree else "[red]counts DISAGREE[/]"))


# ---------------------------------------------------------------------------------------------- spaces


@app.command()
def spaces(as_json: JsonFlag = False) -> None:
    """List the built-in search spaces with their size and MAC range at their default resolution."""
    from nasscale.space import builtin_space_names, describe_space, load_space

    rows = [describe_space(load_space(name)) for name in builtin_space_names()]
    if as_json:
        print_json(rows)
        return
    table = Table(title="Built-in search spaces (MACs at 3 input channels, 1000 classes)")
    for column in ("space", "stages", "resolution", "architectures", "MACs min", "MACs max", "description"):
        table.add_column(column, justify="left" if column in ("space", "description") else "right")
    for row in rows:
        table.add_row(row["name"], str(row["stages"]), str(row["resolution"]), f"{row['size']:.3g}",
                      format_count(row["macs_min"]), format_count(row["macs_max"]), row["description"])
    console.print(table)


@app.command()
def sample(
    space: Annotated[str, typer.Option(help="A built-in space name or a space YAML file.")] = "mnas",
    count: Annotated[int, typer.Option("-n", "--count", min=1, help="How many architectures.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same architectures.")] = 0,
    in_channels: Annotated[int, typer.Option(min=1)] = 3,
    num_classes: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: JsonFlag = False,
) -> None:
    """Sample architectures from a space and print them with their cost. Each JSON item's "arch" is a
    file that 'nasscale cost' accepts."""
    from nasscale.arch import summary, to_dict
    from nasscale.cost import cost as analytic_cost
    from nasscale.sampling import RandomChooser
    from nasscale.sampling import sample as sample_arch
    from nasscale.space import load_space

    search_space = load_space(space)
    chooser = RandomChooser(seed)
    archs = [sample_arch(search_space, chooser, in_channels=in_channels, num_classes=num_classes)
             for _ in range(count)]
    items = []
    for arch in archs:
        arch_cost = analytic_cost(arch)
        items.append({"arch_id": arch.arch_id, "params": arch_cost.params, "macs": arch_cost.macs,
                      "summary": summary(arch), "arch": to_dict(arch)})
    if as_json:
        print_json(items)
        return
    table = Table(title=f"{count} samples of {space} (seed {seed})")
    for column in ("arch_id", "params", "MACs", "architecture"):
        table.add_column(column, justify="right" if column in ("params", "MACs") else "left")
    for item in items:
        table.add_row(item["arch_id"], format_count(item["params"]), format_count(item["macs"]), item["summary"])
    console.print(table)


# ---------------------------------------------------------------------------------------------- search


@app.command()
def search(
    config: Annotated[str | None, typer.Option(help="A study config (studies/*.yaml); flags override it.")] = None,
    space: Annotated[str | None, typer.Option(help="Built-in space name or YAML file [mnas].")] = None,
    data: Annotated[str | None, typer.Option(
        help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR [digits].")] = None,
    trials: Annotated[int | None, typer.Option(help="Total trained trials in the study; re-running resumes "
                                                    "up to this number [20].")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop this run after this many seconds.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Proxy training epochs per trial [3].")] = None,
    objectives: Annotated[str | None, typer.Option(help="Comma-separated: accuracy,macs[,params][,latency] "
                                                        "[accuracy,macs].")] = None,
    max_macs: Annotated[str | None, typer.Option(help="MAC budget, e.g. 400M (checked before training).")] = None,
    max_params: Annotated[str | None, typer.Option(help="Parameter budget, e.g. 5M.")] = None,
    sampler: Annotated[str | None, typer.Option(help="nsga2 | tpe | random [nsga2].")] = None,
    reward: Annotated[str | None, typer.Option(help="mnas: single objective ACC x (MACs/T)^w.")] = None,
    target_macs: Annotated[str | None, typer.Option(help="T of the MnasNet reward, e.g. 400M.")] = None,
    max_latency: Annotated[str | None, typer.Option(help="Latency budget per batch-1 forward pass, e.g. 15ms "
                                                         "(checked before training; with a table, before "
                                                         "building).")] = None,
    target_latency: Annotated[str | None, typer.Option(help="T of MnasNet's latency reward ACC x (LAT/T)^w, e.g. "
                                                            "15ms (with --reward mnas, instead of --target-macs).")]
    = None,
    latency_table: Annotated[str | None, typer.Option(help="Predict latency from this table ('nasscale "
                                                           "latency-table'); without one, each trial's model is "
                                                           "measured.")] = None,
    latency_repeats: Annotated[int | None, typer.Option(help="Timed runs per measured latency (the fastest counts) "
                                                             "[10].")] = None,
    evaluator: Annotated[str | None, typer.Option(help="training | zero-cost:NAME: score each trial with a "
                                                       "zero-cost proxy (synflow, grad_norm, snip, naswot, "
                                                       "jacob_cov, params, macs) instead of training "
                                                       "[training].")] = None,
    prefilter: Annotated[str | None, typer.Option(help="NAME:K: score K candidates per trial with zero-cost proxy "
                                                       "NAME and train only the best, e.g. naswot:8.")] = None,
    w: Annotated[float | None, typer.Option("--w", help="Exponent w of the MnasNet reward [-0.07].")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage URL [sqlite:///nasscale.db].")] = None,
    study: Annotated[str | None, typer.Option(help="Study name [<space>-<data>].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the sampler, the split and the training [0].")] = None,
    proxy_resolution: Annotated[int | None, typer.Option(help="Training image size [32].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Proxy training batch size [64].")] = None,
    max_train_samples: Annotated[int | None, typer.Option(help="Train on at most this many images.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads per trial [1].")] = None,
    device: Annotated[str | None, typer.Option(help="Where trials train: cpu | cuda | cuda:N [cpu].")] = None,
    backend: Annotated[str | None, typer.Option(help="optuna: one trial at a time in this process (start one "
                                                    "process per worker on a shared --storage) | ray: --workers "
                                                    "trials at once on Ray [optuna].")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join: auto or HOST:PORT [start a local "
                                                         "Ray runtime].")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray backend: trials run at once [1].")] = None,
    cpus_per_trial: Annotated[int | None, typer.Option(help="Ray backend: CPUs, and torch threads, per trial "
                                                            "[1].")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="Ray backend: GPUs reserved per trial [0].")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Search a space for the Pareto front of accuracy against MACs or latency (or a MnasNet reward) with Optuna.

    Running the same command again resumes the same study. Ctrl-C stops cleanly; finished trials are kept.
    Several processes (or --backend ray) on one --storage share the study and its --trials total.
    """
    from nasscale.backends import get_backend
    from nasscale.results import best_frame, trials_frame
    from nasscale.study import load_config_file, make_config

    overrides = {"space": space, "data": data, "trials": trials, "timeout": timeout, "epochs": epochs,
                 "objectives": objectives, "max_macs": max_macs, "max_params": max_params, "sampler": sampler,
                 "reward": reward, "target_macs": target_macs, "reward_exponent": w, "storage": storage,
                 "study": study, "seed": seed, "proxy_resolution": proxy_resolution, "batch_size": batch_size,
                 "max_train_samples": max_train_samples, "threads": threads, "device": device, "backend": backend,
                 "ray_address": ray_address, "workers": workers, "cpus_per_trial": cpus_per_trial,
                 "gpus_per_trial": gpus_per_trial, "max_latency": max_latency, "target_latency": target_latency,
                 "latency_table": latency_table, "latency_repeats": latency_repeats, "evaluator": evaluator,
                 "prefilter": prefilter}
    file_values = load_config_file(config) if config else None
    search_config = make_config(file_values, overrides, source=config)
    run_search = get_backend(search_config.backend)
    with SearchProgressDisplay(search_config, quiet=as_json) as progress:
        result = run_search(search_config, progress=progress)
    front = best_frame(result)
    all_trials = trials_frame(result)
    if as_json:
        print_json({"study": result.study_name, "storage": search_config.storage,
                    "objectives": search_config.objective_names,
                    "trials": int((all_trials["note"] == "").sum()), "best": _records(front)})
        return
    print_trials_table(front, title=f"Pareto front of study {result.study_name!r} ({search_config.storage})"
                       if search_config.is_multi_objective else f"Best trials of study {result.study_name!r}")
    infeasible = int(all_trials["state"].eq("pruned").sum())
    console.print(f"{len(all_trials)} trials in the study ({infeasible} pruned or over budget). "
                  f"Next: nasscale export --study {result.study_name} --trial N --out DIR", highlight=False)


def _records(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def print_trials_table(frame, *, title: str) -> None:
    """The trials of ``results.best_frame``; latency columns only when recorded, the accuracy column named for
    what it holds (a zero-cost study's score)."""
    from nasscale.study import accuracy_label

    evaluators = frame["evaluator"].dropna()
    show_latency = frame["latency_ms"].notna().any()
    columns = ["trial", accuracy_label(evaluators.iloc[0] if len(evaluators) else None), "MACs", "params",
               *(["latency ms", "from"] if show_latency else []), "value", "architecture"]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("architecture", "from") else "right")
    show_value = frame["value"].notna().any()
    for row in frame.itertuples():
        latency = [_milliseconds(row.latency_ms), row.latency_source or ""] if show_latency else []
        table.add_row(str(row.trial), "" if row.accuracy is None else f"{row.accuracy:.4f}",
                      format_count(row.macs) if row.macs else "", format_count(row.params) if row.params else "",
                      *latency,
                      f"{row.value:.4f}" if show_value and row.value == row.value else "", row.summary or "")
    console.print(table)


def _objective_text(name: str, value: float) -> str:
    if name == "latency":
        return f"{value:.3g} ms"
    return format_count(value) if value > 10 else f"{value:.4f}"


def _milliseconds(value) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) and value == value else ""


class SearchProgressDisplay:
    """Rich progress bars for trials and epochs (on stderr); one line per finished trial."""

    def __init__(self, config, *, quiet: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.config = config
        self.quiet = quiet
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=error_console, disable=quiet)
        self.trials_task = None
        self.epochs_task = None

    def __enter__(self) -> SearchProgressDisplay:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.trials_task is not None:
            self.bars.__exit__(*exc_info)

    def _start(self) -> None:
        # Started on the first trial, so that set-up errors (a missing dataset) stay one clean line.
        if self.trials_task is None:
            self.bars.__enter__()
            self.trials_task = self.bars.add_task(f"study {self.config.study_name}", total=self.config.trials)
            self.epochs_task = self.bars.add_task("epochs", total=self.config.epochs, visible=False)

    def trial_started(self, number, arch, trial_cost) -> None:
        self._start()
        trains = self.config.zero_cost_proxy is None  # a zero-cost evaluator scores without epochs
        self.bars.reset(self.epochs_task, total=self.config.epochs, visible=trains,
                        description=f"trial {number} ({format_count(trial_cost.macs)} MACs)")

    def epoch_finished(self, number, epoch, epochs, accuracy) -> None:
        self.bars.update(self.epochs_task, completed=epoch,
                         description=f"trial {number} epoch {epoch}/{epochs} acc {accuracy:.3f}")

    def trial_finished(self, number, state, values) -> None:
        self._start()
        self.bars.advance(self.trials_task)
        if not self.quiet:
            shown = ", ".join(f"{name} {_objective_text(name, value)}"
                              for name, value in zip(self.config.objective_names, values or [], strict=False))
            self.bars.console.print(f"trial {number}: {state}{': ' + shown if shown else ''}", highlight=False)


# ------------------------------------------------------------------------------------------------ best


StudyOption = Annotated[str, typer.Option("--study", help="Study name.")]
StorageOption = Annotated[str, typer.Option(help="Optuna storage URL.")]


@app.command()
def best(study: StudyOption, storage: StorageOption = "sqlite:///nasscale.db", top: Annotated[int, typer.Option(
        help="Rows for single-objective studies.")] = 10, as_json: JsonFlag = False) -> None:
    """The Pareto-optimal trials of a study (or the best ones for a single objective)."""
    from nasscale.results import best_frame, open_study

    result = open_study(study, storage)
    frame = best_frame(result, top=top)
    if as_json:
        print_json(_records(frame))
        return
    if frame.empty:
        console.print(f"study {study!r} has no completed trial yet")
        return
    print_trials_table(frame, title=f"Best trials of study {study!r}")


@app.command()
def export(study: StudyOption, trial: Annotated[int, typer.Option(help="Trial number.")],
           out: Annotated[Path, typer.Option(help="Folder to write arch.yaml and trial.json into.")],
           storage: StorageOption = "sqlite:///nasscale.db") -> None:
    """Write a trial's architecture file (and its recorded metrics) to a folder."""
    from nasscale.arch import to_yaml
    from nasscale.results import get_trial, open_study, trial_arch

    frozen = get_trial(open_study(study, storage), trial)
    arch = trial_arch(frozen)
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch.yaml").write_text(to_yaml(arch))
    record = {"study": study, "trial": frozen.number, "state": frozen.state.name.lower(), "values": frozen.values,
              "params": frozen.params, **frozen.user_attrs}
    (out / "trial.json").write_text(json.dumps(record, indent=2))
    console.print(f"wrote {out / 'arch.yaml'} and {out / 'trial.json'} (arch_id {arch.arch_id})", highlight=False)


@app.command()
def train(
    arch: Annotated[str, typer.Option(help="Architecture file or preset name.")],
    out: Annotated[Path, typer.Option(help="Folder for weights.pt, model.onnx, arch.yaml, metrics.json.")],
    data: Annotated[str, typer.Option(help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR")] = "digits",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    resolution: Annotated[int | None, typer.Option(help="Training image size [the data's own].")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 0.05,
    seed: int = 0,
    threads: Annotated[int, typer.Option(min=1)] = 1,
    max_train_samples: int | None = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | cuda:N.")] = "cpu",
    as_json: JsonFlag = False,
) -> None:
    """Train an architecture fully and save its weights (state dict) and an ONNX export."""
    from nasscale.evaluators.training import TrainSettings
    from nasscale.presets import resolve_arch
    from nasscale.train import train_and_save

    settings = TrainSettings(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                             resolution=resolution, threads=threads, seed=seed, max_train_samples=max_train_samples,
                             device=device)

    def on_epoch(record) -> None:
        if not as_json:
            error_console.print(f"epoch {record.epoch}/{epochs}: loss {record.train_loss:.4f}, "
                                f"validation accuracy {record.validation_accuracy:.4f}", highlight=False)

    metrics = train_and_save(resolve_arch(arch), data, out, settings=settings, seed=seed, on_epoch=on_epoch)
    if as_json:
        print_json(metrics)
        return
    console.print(f"validation accuracy {metrics['validation_accuracy']:.4f}; wrote "
                  + ", ".join(str(out / name) for name in metrics["files"]), highlight=False)


# ------------------------------------------------------------------ commands that live in their own modules

# Each command module defines plain functions; registering them here keeps the command table in one place.
app.command(name="scale")(cli_scale.scale)
app.command(name="report")(cli_report.report)
app.command(name="dashboard")(cli_report.dashboard)
app.command(name="rerun")(cli_distributed.rerun)
app.command(name="latency")(cli_hardware.latency)
app.command(name="latency-table")(cli_hardware.latency_table)
app.command(name="proxies")(cli_hardware.proxies)
app.command(name="timm")(cli_interchange.timm)
app.command(name="from-timm")(cli_interchange.from_timm)


# ------------------------------------------------------------------------------------------- entry point


INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


def _stop_on_signal(signal_number: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signal_number}")


def _install_stop_signals() -> None:
    """SIGINT and SIGTERM stop the command the way Ctrl-C does: the running trial is marked failed and
    every finished one is already stored. Set explicitly, because a process started in the background by
    a shell inherits SIGINT ignored."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop_on_signal)
        signal.signal(signal.SIGTERM, _stop_on_signal)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if argv is None:  # only as the console script: in-process callers (tests) keep their own handlers
        _install_stop_signals()
    try:
        status = app(args=args, prog_name="nasscale", standalone_mode=False)
        if status == INTERRUPTED:  # Typer turns Ctrl-C into this return value when not standalone
            raise KeyboardInterrupt
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Exit as exit_request:
        sys.exit(exit_request.exit_code)
    except click.ClickException as usage_error:
        usage_error.show()
        sys.exit(usage_error.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("nasscale: interrupted; finished trials are kept, run the same command to resume", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except NasscaleError as error:
        if state["debug"]:
            raise
        for line in str(error).splitlines():  # a space file can have several problems, one line each
            print(f"nasscale: error: {line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
