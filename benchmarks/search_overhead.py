"""Toolkit overhead per search trial: sample + analytic cost + build, against the proxy training they precede.

Runs a real search (``run_search``, NSGA-II, a SQLite study in a temporary folder) on digits over the
``mnas`` space with the default search settings (3 epochs, proxy resolution 32, batch 64, 1 thread), and
reads each trial's own timings back from the study. Per trial it reports:

- toolkit: ``sample(space, RandomChooser)`` (timed separately, one fresh architecture per trial),
  ``cost(arch)`` and ``build(arch)`` as the trial timed them; overhead = (sample + cost + build) / train,
  the target being < 2 %;
- Optuna in the search: the trial's ``sample(space, OptunaChooser(trial))`` (NSGA-II's proposal plus one
  storage write per parameter) plus the rest of Optuna's bookkeeping (creating the trial, ~10
  ``set_user_attr`` writes, ``tell``, the stop check that reads all trials), i.e. the trial's full cycle
  minus cost, build and training;
- Optuna replayed without training: the same sampler and seed, told the same values, so it proposes the same
  architectures, doing a trial's Optuna calls (ask, suggest, set_user_attr, tell, the stop check) on an
  in-memory storage (the sampler alone), on SQLite (the search default) and on the journal file storage;
  SQLite minus in-memory is the storage's share;
- a bare ``study.ask()`` + ``study.tell()`` round trip on SQLite, for reference.

Training times are wall times on whatever else the machine runs, so they are noisy; each ratio uses the same
trial's own training time. Reproduce with

    python benchmarks/search_overhead.py --trials 20

(``--epochs``, ``--space``, ``--data`` change the setting; the JSON records what was run.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import optuna
import torch

from nasscale.evaluate.data import load_splits
from nasscale.search.backends.optuna_backend import run_search
from nasscale.search.config import SearchConfig
from nasscale.search.objective import SilentProgress, architecture_attributes
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH_ID,
    ATTR_HISTORY,
    ATTR_MACS,
    ATTR_SEED,
    ATTR_TIMINGS,
    ATTR_TRAINED,
)
from nasscale.search.samplers import make_sampler
from nasscale.search.storage import make_storage
from nasscale.search.trials import is_evaluated
from nasscale.space.parsing import load_space
from nasscale.space.sampling import OptunaChooser, RandomChooser, sample
from nasscale.spec.cost import cost

RESULTS = Path(__file__).parent / "results" / "search_overhead.json"
TARGET = 0.02
DEFAULTS = SearchConfig()


class Stamps(SilentProgress):
    """Wall-clock stamps of each trial's end (to close the last trial's cycle), and a progress line."""

    def __init__(self) -> None:
        self.finished: dict[int, datetime] = {}

    def trial_finished(self, number: int, state: str, values: list[float] | None) -> None:
        self.finished[number] = datetime.now()
        shown = f"accuracy {values[0]:.3f}, MACs {values[1] / 1e6:.0f}M" if values and len(values) == 2 else values
        print(f"  trial {number} {state}: {shown}", flush=True)


def random_sample_seconds(space, count: int, *, in_channels: int, num_classes: int, seed: int) -> list[float]:
    """One ``sample(space, RandomChooser)`` per trial, each a fresh architecture, timed one call at a time."""
    seconds = []
    for index in range(count):
        chooser = RandomChooser(seed + index)
        started = time.perf_counter()
        sample(space, chooser, in_channels=in_channels, num_classes=num_classes)
        seconds.append(time.perf_counter() - started)
    return seconds


def cost_seconds_repeated(arch, repeats: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        cost(arch)
    return (time.perf_counter() - started) / repeats


def ask_tell_round_trips(folder: Path, count: int) -> list[float]:
    """Bare SQLite storage cost: ``ask`` + ``tell`` with no parameters, on a fresh study."""
    storage = make_storage(f"sqlite:///{folder / 'round_trip.db'}")  # configured as a search's storage
    study = optuna.create_study(study_name="round-trip", storage=storage, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    seconds = []
    with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize"
        warnings.simplefilter("ignore", UserWarning)
        for index in range(count):
            started = time.perf_counter()
            trial = study.ask()
            study.tell(trial, [0.5, float(index)])
            seconds.append(time.perf_counter() - started)
    return seconds


def replay_optuna(trials: list[optuna.trial.FrozenTrial], config: SearchConfig, space, storage, *,
                  in_channels: int, num_classes: int) -> tuple[list[float], bool]:
    """A trial's Optuna calls without the training, per trial: ask, suggest (through ``sample``), the
    ``set_user_attr`` writes, tell and the stop check's read of all trials. ``cost`` is left out of the time.

    The sampler and seed are the search's and it is told the search's values, so it proposes the same
    architectures; the second value says whether it did.
    """
    study = optuna.create_study(study_name="replay", storage=storage, directions=config.directions,
                                sampler=make_sampler(config, config.seed))
    seconds, same = [], True
    with warnings.catch_warnings():  # "heartbeat is supposed to be used with Study.optimize"
        warnings.simplefilter("ignore", UserWarning)
        for real in trials:
            started = time.perf_counter()
            trial = study.ask()
            arch = sample(space, OptunaChooser(trial), in_channels=in_channels, num_classes=num_classes)
            paused = time.perf_counter()
            attributes = architecture_attributes(arch, cost(arch))
            started += time.perf_counter() - paused
            for key, value in attributes.items():
                trial.set_user_attr(key, value)
            for key in (ATTR_SEED, ATTR_TRAINED, ATTR_ACCURACY, ATTR_HISTORY, ATTR_TIMINGS):
                trial.set_user_attr(key, real.user_attrs[key])
            study.tell(trial, real.values)
            study.get_trials(deepcopy=False)
            seconds.append(time.perf_counter() - started)
            same = same and attributes[ATTR_ARCH_ID] == real.user_attrs[ATTR_ARCH_ID]
    return seconds, same


def trial_rows(trials: list[optuna.trial.FrozenTrial], stamps: Stamps, random_seconds: list[float],
               replays: dict[str, list[float]]) -> list[dict]:
    rows = []
    for position, trial in enumerate(trials):
        timings = trial.user_attrs[ATTR_TIMINGS]
        arch_cost_seconds = timings["cost_seconds"]
        if position + 1 < len(trials):  # creation of this trial to creation of the next: the full cycle
            cycle = (trials[position + 1].datetime_start - trial.datetime_start).total_seconds()
        else:  # the last: up to its end-of-trial callback (misses the stop check that follows)
            cycle = (stamps.finished[trial.number] - trial.datetime_start).total_seconds()
        toolkit = random_seconds[position] + arch_cost_seconds + timings["build_seconds"]
        train = timings["train_seconds"]
        bookkeeping = cycle - timings["sample_seconds"] - arch_cost_seconds - timings["build_seconds"] - train
        optuna_seconds = timings["sample_seconds"] + bookkeeping
        rows.append({
            "trial": trial.number,
            "macs": trial.user_attrs[ATTR_MACS],
            "accuracy": trial.user_attrs[ATTR_ACCURACY],
            "sample_random_seconds": random_seconds[position],
            "cost_seconds": arch_cost_seconds,
            "build_seconds": timings["build_seconds"],
            "train_seconds": train,
            "toolkit_overhead": toolkit / train,
            "sample_optuna_seconds": timings["sample_seconds"],
            "optuna_bookkeeping_seconds": bookkeeping,
            "optuna_seconds": optuna_seconds,
            "optuna_overhead": optuna_seconds / train,
            **{f"replay_{name}_seconds": seconds[position] for name, seconds in replays.items()},
            **{f"replay_{name}_overhead": seconds[position] / train for name, seconds in replays.items()},
            "cycle_seconds": cycle,
            "total_overhead": (cycle - train) / train,
        })
    return rows


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "max": max(values), "min": min(values),
            "mean": statistics.fmean(values)}


def print_table(rows: list[dict]) -> None:
    print(f"{'':>5} {'':>8} {'':>6} {'toolkit':^43} | {'Optuna in search':^15} | "
          f"{'Optuna replayed, ms':^23} |")
    print(f"{'trial':>5} {'MACs':>8} {'acc':>6} {'sample':>8} {'cost':>8} {'build':>8} {'train':>7} {'ovh':>7} | "
          f"{'time':>7} {'ovh':>7} | {'memory':>7} {'sqlite':>7} {'journal':>7} | {'total':>7}")
    print(f"{'':>5} {'':>8} {'':>6} {'ms':>8} {'ms':>8} {'ms':>8} {'s':>7} {'%':>7} | {'ms':>7} {'%':>7} | "
          f"{'':>7} {'':>7} {'':>7} | {'ovh %':>7}")
    for row in rows:
        print(f"{row['trial']:>5} {row['macs'] / 1e6:>7.0f}M {row['accuracy']:>6.3f} "
              f"{row['sample_random_seconds'] * 1e3:>8.3f} {row['cost_seconds'] * 1e3:>8.3f} "
              f"{row['build_seconds'] * 1e3:>8.1f} {row['train_seconds']:>7.2f} {row['toolkit_overhead']:>7.3%} | "
              f"{row['optuna_seconds'] * 1e3:>7.0f} {row['optuna_overhead']:>7.2%} | "
              f"{row['replay_memory_seconds'] * 1e3:>7.1f} {row['replay_sqlite_seconds'] * 1e3:>7.0f} "
              f"{row['replay_journal_seconds'] * 1e3:>7.0f} | {row['total_overhead']:>7.2%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of the search (default 20)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="proxy epochs (search default 3)")
    parser.add_argument("--space", default="mnas", help="search space (default mnas)")
    parser.add_argument("--data", default="digits", help="data source (default digits)")
    parser.add_argument("--round-trips", type=int, default=50, help="bare ask/tell round trips to time")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()

    wall_started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nasscale-overhead-") as folder:
        config = SearchConfig(space=options.space, data=options.data, trials=options.trials, epochs=options.epochs,
                              storage=f"sqlite:///{Path(folder) / 'study.db'}", study="overhead")
        space = load_space(config.space)
        train, _ = load_splits(config.data, validation_fraction=config.validation_fraction, seed=config.seed,
                               max_train_samples=config.max_train_samples)
        in_channels, num_classes = train.in_channels, train.num_classes
        random_seconds = random_sample_seconds(space, options.trials, in_channels=in_channels,
                                               num_classes=num_classes, seed=config.seed)
        print(f"search: {config.trials} trials, space {config.space}, data {config.data} "
              f"({in_channels} channel(s), {num_classes} classes), sampler {config.sampler} "
              f"(population {config.population_size}), epochs {config.epochs}, proxy resolution "
              f"{config.proxy_resolution}, batch {config.batch_size}, threads {config.threads}, SQLite storage",
              flush=True)
        stamps = Stamps()
        search_started = time.perf_counter()
        study = run_search(config, progress=stamps)
        search_seconds = time.perf_counter() - search_started
        trials = [trial for trial in study.get_trials(deepcopy=False) if is_evaluated(trial)]
        replays, replayed_same = {}, {}
        for name, storage in (("memory", None), ("sqlite", make_storage(f"sqlite:///{Path(folder) / 'replay.db'}")),
                              ("journal", make_storage(f"journal:{Path(folder) / 'replay.log'}"))):
            replays[name], replayed_same[name] = replay_optuna(trials, config, space, storage,
                                                               in_channels=in_channels, num_classes=num_classes)
        rows = trial_rows(trials, stamps, random_seconds, replays)
        round_trips = ask_tell_round_trips(Path(folder), options.round_trips)
        warm_cost = [cost_seconds_repeated(sample(space, RandomChooser(config.seed + index),
                                                  in_channels=in_channels, num_classes=num_classes))
                     for index in range(5)]

    print_table(rows)
    summary = {
        "trials": len(rows),
        "toolkit_overhead": spread([row["toolkit_overhead"] for row in rows]),
        "toolkit_overhead_below_target": max(row["toolkit_overhead"] for row in rows) < TARGET,
        "optuna_overhead": spread([row["optuna_overhead"] for row in rows]),
        "total_overhead": spread([row["total_overhead"] for row in rows]),
        "sample_random_seconds": spread([row["sample_random_seconds"] for row in rows]),
        "cost_seconds": spread([row["cost_seconds"] for row in rows]),
        "cost_seconds_warm_mean_of_50": spread(warm_cost),
        "build_seconds": spread([row["build_seconds"] for row in rows]),
        "train_seconds": spread([row["train_seconds"] for row in rows]),
        "sample_optuna_seconds": spread([row["sample_optuna_seconds"] for row in rows]),
        "optuna_bookkeeping_seconds": spread([row["optuna_bookkeeping_seconds"] for row in rows]),
        "optuna_seconds": spread([row["optuna_seconds"] for row in rows]),
        **{f"replay_{name}_seconds": spread(seconds) for name, seconds in replays.items()},
        **{f"replay_{name}_overhead": spread([row[f"replay_{name}_overhead"] for row in rows]) for name in replays},
        "replay_proposed_the_search_architectures": replayed_same,
        "sqlite_ask_tell_round_trip_seconds": spread(round_trips),
        "search_seconds": search_seconds,
        "wall_seconds": time.perf_counter() - wall_started,
    }
    settings = {
        "command": "python benchmarks/search_overhead.py " + " ".join(
            f"--{name.replace('_', '-')} {value}" for name, value in
            (("trials", options.trials), ("epochs", options.epochs), ("space", options.space),
             ("data", options.data), ("round_trips", options.round_trips))),
        "search_config": {key: value for key, value in config.to_dict().items() if key != "storage"},
        "storage": "sqlite (temporary folder)",
        "in_channels": in_channels, "num_classes": num_classes,
        "target_toolkit_overhead": TARGET,
        "reduced_from_defaults": {name: getattr(config, name) for name in ("epochs",)
                                  if getattr(config, name) != getattr(DEFAULTS, name)} or None,
        "python": platform.python_version(), "torch": torch.__version__, "optuna": optuna.__version__,
        "cpu_count": os.cpu_count(), "torch_threads_outside_training": torch.get_num_threads(),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    notes = [
        "toolkit_overhead = (sample with RandomChooser + cost + build) / train, per trial; sample is timed apart "
        "from the search (one fresh architecture per trial), cost and build are the trial's own timings.",
        "optuna_overhead = (sample with OptunaChooser + bookkeeping) / train: NSGA-II's proposal, one SQLite "
        "write per parameter, trial creation, set_user_attr writes, tell and the stop check.",
        "bookkeeping = the trial's full cycle (its creation to the next trial's creation) minus sample, cost, "
        "build and train; for the last trial the cycle ends at its end-of-trial callback.",
        "total_overhead = (cycle - train) / train: everything a trial spends outside proxy training.",
        "replay_<storage>: the trial's Optuna calls (ask, suggest through sample, set_user_attr, tell, reading all "
        "trials) replayed after the search without training, same sampler, seed and told values; memory is the "
        "sampler's own cost, sqlite minus memory the storage's. Optuna's RDB storage commits each suggest and "
        "each set_user_attr as its own SQLite transaction, so the cost grows with the number of parameters and "
        "with the disk's sync latency.",
        "train is train_model's wall time: preparation, training steps and per-epoch validation; trial 0 also "
        "pays the one-off resize of the dataset to the proxy resolution.",
        "The first trial's cost and build include first-call effects; cost_seconds_warm_mean_of_50 shows the "
        "warm per-call time. Times are wall times on a shared machine; ratios use the same trial's training.",
    ]
    print()
    for name in ("toolkit_overhead", "optuna_overhead", "total_overhead", "replay_memory_overhead",
                 "replay_sqlite_overhead", "replay_journal_overhead"):
        print(f"{name:23s} median {summary[name]['median']:.3%}  max {summary[name]['max']:.3%}")
    trips = summary["sqlite_ask_tell_round_trip_seconds"]
    print(f"SQLite ask+tell round trip: median {trips['median'] * 1e3:.1f} ms, max {trips['max'] * 1e3:.1f} ms; "
          f"median training {summary['train_seconds']['median']:.1f} s; wall {summary['wall_seconds']:.0f} s")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({"settings": settings, "summary": summary, "notes": notes, "rows": rows},
                                         indent=2))
    print(f"saved {options.output}")


if __name__ == "__main__":
    main()
