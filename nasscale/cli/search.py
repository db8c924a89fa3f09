"""``nasscale search``, ``best`` and ``export``: run a search with live progress, and read a study's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from nasscale.cli.output import JsonFlag, StorageOption, StudyOption, console, error_console, print_json
from nasscale.errors import NasscaleError, SpecError
from nasscale.search.backends import get_backend
from nasscale.search.config import DEFAULT_STORAGE, accuracy_label, load_config_file, make_config
from nasscale.spec.serialization import to_yaml
from nasscale.units import format_count

if TYPE_CHECKING:
    from rich.progress import TaskID

# ---------------------------------------------------------------------------------------------- search


def search(
    config: Annotated[str | None, typer.Option(help="A study config (studies/*.yaml); flags override it.")] = None,
    space: Annotated[str | None, typer.Option(help="Built-in space name or YAML file [mnas].")] = None,
    data: Annotated[str | None, typer.Option(
        help="digits | fashion-mnist[:DIR] | imagefolder:DIR | cifar10:DIR [digits].")] = None,
    trials: Annotated[int | None, typer.Option(help="Total trained trials in the study; re-running resumes "
                                                    "up to this number [20].")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop this run after this many seconds.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Proxy training epochs per trial [3].")] = None,
    objectives: Annotated[str | None, typer.Option(help="Comma-separated: accuracy,macs[,params][,latency]"
                                                        "[,train_time] (ms per image of one training step) "
                                                        "[accuracy,macs].")] = None,
    max_macs: Annotated[str | None, typer.Option(help="MAC budget, e.g. 400M (checked before training).")] = None,
    max_params: Annotated[str | None, typer.Option(help="Parameter budget, e.g. 5M.")] = None,
    sampler: Annotated[str | None, typer.Option(help="nsga2 | tpe | random | evolution (regularized evolution) | "
                                                     "local (Pareto local search) | gp [tpe].")] = None,
    pruner: Annotated[str | None, typer.Option(help="auto (median pruner for one objective, none for several) | "
                                                    "none | mo-asha: multi-objective successive halving, the top "
                                                    "1/eta of each rung by non-dominated sorting go on [auto].")]
    = None,
    min_epochs: Annotated[int | None, typer.Option(help="mo-asha: the first rung, in epochs [1].")] = None,
    reduction_factor: Annotated[int | None, typer.Option(help="mo-asha: eta; rungs at min-epochs x eta^k [3].")]
    = None,
    reward: Annotated[str | None, typer.Option(help="mnas: single objective ACC x (MACs/T)^w.")] = None,
    target_macs: Annotated[str | None, typer.Option(help="T of the MnasNet reward, e.g. 400M.")] = None,
    max_latency: Annotated[str | None, typer.Option(help="Latency budget per batch-1 forward pass, e.g. 15ms "
                                                         "(checked before training; with a table, before "
                                                         "building).")] = None,
    max_train_ms: Annotated[str | None, typer.Option(help="Training-time budget: ms per image of one SGD step at "
                                                          "--batch-size, e.g. 0.5 (measured before training).")]
    = None,
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
                                                       "jacob_cov, params, macs) instead of training | "
                                                       "bench:FILE: answer from a 'nasscale bench' table "
                                                       "[training].")] = None,
    prefilter: Annotated[str | None, typer.Option(help="NAME:K: score K candidates per trial with zero-cost proxy "
                                                       "NAME and train only the best, e.g. naswot:8.")] = None,
    w: Annotated[float | None, typer.Option("--w", help="Exponent w of the MnasNet reward [-0.07].")] = None,
    storage: Annotated[str | None, typer.Option(help=f"Optuna storage URL [{DEFAULT_STORAGE}].")] = None,
    study: Annotated[str | None, typer.Option(help="Study name [<space>-<data>].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the sampler and the training [0].")] = None,
    resolution: Annotated[int | None, typer.Option(help="Deployment resolution: every architecture is trained, "
                                                        "validated and costed at it, the space's resolutions "
                                                        "mapped in proportion [the data's native size].")] = None,
    proxy_resolution: Annotated[int | None, typer.Option(help="Fidelity: train the largest architecture at this "
                                                              "size, smaller ones in proportion (MACs stay counted "
                                                              "at the deployment resolution) [no proxy].")] = None,
    validation_fraction: Annotated[float | None, typer.Option(help="Share of the training data held out to "
                                                                   "choose on [0.1].")] = None,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the validation and held-out test split [0].")]
    = None,
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
    # optuna, pandas: not for --help
    from nasscale.search.results import best_frame, describe_counts, failure_summary, trial_counts

    overrides = {"space": space, "data": data, "trials": trials, "timeout": timeout, "epochs": epochs,
                 "objectives": objectives, "max_macs": max_macs, "max_params": max_params, "sampler": sampler,
                 "pruner": pruner, "min_epochs": min_epochs, "reduction_factor": reduction_factor,
                 "reward": reward, "target_macs": target_macs, "reward_exponent": w, "storage": storage,
                 "study": study, "seed": seed, "resolution": resolution, "proxy_resolution": proxy_resolution,
                 "validation_fraction": validation_fraction, "split_seed": split_seed, "batch_size": batch_size,
                 "max_train_samples": max_train_samples, "threads": threads, "device": device, "backend": backend,
                 "ray_address": ray_address, "workers": workers, "cpus_per_trial": cpus_per_trial,
                 "gpus_per_trial": gpus_per_trial, "max_latency": max_latency, "max_train_ms": max_train_ms,
                 "target_latency": target_latency,
                 "latency_table": latency_table, "latency_repeats": latency_repeats, "evaluator": evaluator,
                 "prefilter": prefilter}
    file_values = load_config_file(config) if config else None
    search_config = make_config(file_values, overrides, source=config)
    run_search = get_backend(search_config.backend)
    with SearchProgressDisplay(search_config, quiet=as_json) as progress:
        result = run_search(search_config, progress=progress)
    failed = failure_summary(result)
    if failed is not None:
        raise NasscaleError(failed)
    front = best_frame(result)
    counts = trial_counts(result)
    if as_json:
        print_json({"study": result.study_name, "storage": search_config.storage,
                    "objectives": search_config.objective_names, "trials": counts["complete"], "counts": counts,
                    "best": _records(front)})
        return
    print_trials_table(front, title=f"Pareto front of study {result.study_name!r} ({search_config.storage})"
                       if search_config.is_multi_objective else f"Best trials of study {result.study_name!r}")
    console.print(f"{describe_counts(counts)}. Next: nasscale export --study {result.study_name} --trial N --out DIR",
                  highlight=False)


def _records(frame) -> list[dict]:
    return json.loads(frame.to_json(orient="records"))


def print_trials_table(frame, *, title: str) -> None:
    """The trials of ``results.best_frame``; latency and training-time columns only when recorded, the accuracy
    column named for what it holds (a zero-cost study's score)."""
    evaluators = frame["evaluator"].dropna()
    show_latency = frame["latency_ms"].notna().any()
    show_train_time = frame["train_time_ms"].notna().any()
    show_value = frame["value"].notna().any()  # a single objective's value (a reward); none on a Pareto front
    columns = ["trial", accuracy_label(evaluators.iloc[0] if len(evaluators) else None), "MACs", "params",
               *(["latency ms", "from"] if show_latency else []), *(["train ms/image"] if show_train_time else []),
               *(["value"] if show_value else []), "architecture"]
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("architecture", "from") else "right")
    for row in frame.itertuples():
        timings = [_milliseconds(row.latency_ms), row.latency_source or ""] if show_latency else []
        timings += [_milliseconds(row.train_time_ms)] if show_train_time else []
        value = [f"{row.value:.4f}" if row.value == row.value else ""] if show_value else []
        table.add_row(str(row.trial), "" if row.val_accuracy is None else f"{row.val_accuracy:.4f}",
                      format_count(row.macs) if row.macs else "", format_count(row.params) if row.params else "",
                      *timings, *value, row.summary or "")
    console.print(table)


def _objective_text(name: str, value: float) -> str:
    if name == "latency":
        return f"{value:.3g} ms"
    if name == "train_time":
        return f"{value:.3g} ms/image"
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
        self.trials_task: TaskID | None = None
        self.epochs_task: TaskID | None = None

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
        assert self.epochs_task is not None  # added by _start
        self.bars.reset(self.epochs_task, total=self.config.epochs, visible=trains,
                        description=f"trial {number} ({format_count(trial_cost.macs)} MACs)")

    def epoch_finished(self, number, epoch, epochs, accuracy) -> None:
        assert self.epochs_task is not None  # added when the trial started
        self.bars.update(self.epochs_task, completed=epoch,
                         description=f"trial {number} epoch {epoch}/{epochs} acc {accuracy:.3f}")

    def trial_finished(self, number, state, values) -> None:
        self._start()
        assert self.trials_task is not None  # added by _start
        self.bars.advance(self.trials_task)
        if not self.quiet:
            shown = ", ".join(f"{name} {_objective_text(name, value)}"
                              for name, value in zip(self.config.objective_names, values or [], strict=False))
            self.bars.console.print(f"trial {number}: {state}{': ' + shown if shown else ''}", highlight=False)


def best(study: StudyOption, storage: StorageOption = DEFAULT_STORAGE, top: Annotated[int, typer.Option(
        help="Rows for single-objective studies.")] = 10, as_json: JsonFlag = False) -> None:
    """The Pareto-optimal trials of a study (or the best ones for a single objective)."""
    # optuna: imported where needed, so this module loads without it
    from nasscale.search.results import best_frame, open_study

    result = open_study(study, storage)
    frame = best_frame(result, top=top)
    if as_json:
        print_json(_records(frame))
        return
    if frame.empty:
        console.print(f"study {study!r} has no completed trial yet")
        return
    print_trials_table(frame, title=f"Best trials of study {study!r}")


def export(study: StudyOption, trial: Annotated[int, typer.Option(help="Trial number.")],
           out: Annotated[Path, typer.Option(help="Folder to write arch.yaml and trial.json into.")],
           storage: StorageOption = DEFAULT_STORAGE,
           allow_untrained: Annotated[bool, typer.Option("--allow-untrained", help="Export a trial without a result "
                                                         "(over budget, skipped, failed) too.")] = False) -> None:
    """Write a trial's architecture file (and its recorded metrics) to a folder."""
    # optuna: imported where needed, so this module loads without it
    from nasscale.search.results import get_trial, open_study, require_result, trial_arch

    if out.exists() and not out.is_dir():
        raise SpecError("--out", f"{out} is a file; give a folder to write arch.yaml and trial.json into")
    frozen = get_trial(open_study(study, storage), trial)
    if not allow_untrained:
        require_result(frozen)
    arch = trial_arch(frozen)
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch.yaml").write_text(to_yaml(arch))
    record = {"study": study, "trial": frozen.number, "state": frozen.state.name.lower(), "values": frozen.values,
              "params": frozen.params, **frozen.user_attrs}
    (out / "trial.json").write_text(json.dumps(record, indent=2))
    console.print(f"wrote {out / 'arch.yaml'} and {out / 'trial.json'} (arch_id {arch.arch_id})", highlight=False)
