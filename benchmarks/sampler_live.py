"""Samplers on live training at equal wall-clock: does the ordering measured on the benchmark table hold when
every trial really trains?

Each (method, seed) runs the real search, ``nasscale search`` as a library call, with ``--timeout`` seconds of
wall-clock and as many trials as fit (a method is a sampler name, or NAME+mo-asha for that sampler with
``--pruner mo-asha``). Runs go two at a time (``--jobs``), one torch thread each, methods interleaved so that
each shares the machine with the others alike. The hypervolume of a run is that of its fully trained trials'
(validation accuracy, MACs / the space's largest MACs) with reference (0, 1), as on the table; it is also
recorded against the seconds since the run started, and against evaluated trials. Results are written after
every finished run, so a kill loses at most the runs in flight (rerun with the same command to redo them).

    python benchmarks/sampler_live.py --space tiny --data fashion-mnist --samplers local,local+mo-asha,random \\
        --seeds 3 --wall-seconds 300 --epochs 4 --max-train-samples 3000 --jobs 2

Seeds start at ``--first-seed`` (100 by default): the table was built with seed 0's training, so these runs'
initial weights differ from the ones it recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

from nasscale.search.pareto import hypervolume_2d

RESULTS = Path(__file__).parent / "results" / "sampler_live.json"
ASHA_SUFFIX = "+mo-asha"
DIRECTIONS = ("maximize", "minimize")
REFERENCE = (0.0, 1.0)


def make_config(options: argparse.Namespace, method: str, seed: int, folder: str):
    from nasscale.search.config import SearchConfig

    sampler, asha = method.removesuffix(ASHA_SUFFIX), method.endswith(ASHA_SUFFIX)
    pruning = ({"pruner": "mo-asha", "min_epochs": options.min_epochs, "reduction_factor": options.reduction_factor}
               if asha else {})
    return SearchConfig(space=options.space, data=options.data, study=f"{method}-seed{seed}",
                        storage=f"sqlite:///{Path(folder) / f'{method}-seed{seed}.db'}", trials=options.max_trials,
                        timeout=options.wall_seconds, sampler=sampler, population_size=options.population_size,
                        seed=seed, epochs=options.epochs, max_train_samples=options.max_train_samples, threads=1,
                        **pruning)


def run_one(options: argparse.Namespace, method: str, seed: int, folder: str) -> dict:
    from nasscale.search.backends.optuna_backend import run_search
    from nasscale.search.record import ATTR_ACCURACY, ATTR_EPOCHS_TRAINED, ATTR_FINISHED_AT, ATTR_MACS
    from nasscale.search.results import trial_counts
    from nasscale.search.storage import quiet_optuna
    from nasscale.search.trials import is_evaluated

    quiet_optuna()
    started_at = time.time()
    study = run_search(make_config(options, method, seed, folder))
    wall_seconds = time.time() - started_at
    evaluated = sorted((trial for trial in study.get_trials(deepcopy=False) if is_evaluated(trial)),
                       key=lambda trial: trial.user_attrs[ATTR_FINISHED_AT])
    points = [(trial.user_attrs[ATTR_FINISHED_AT] - started_at,
               trial.user_attrs[ATTR_ACCURACY] if trial.state.name == "COMPLETE" else None,
               trial.user_attrs[ATTR_MACS], trial.user_attrs.get(ATTR_EPOCHS_TRAINED, options.epochs))
              for trial in evaluated]
    return {"sampler": method, "seed": seed, "points": points, "wall_seconds": wall_seconds,
            "counts": trial_counts(study)}


def score(run: dict, max_macs: int) -> dict:
    done, curve, epochs = [], [], 0
    for seconds, accuracy, macs, trained in run["points"]:
        epochs += trained
        if accuracy is not None:
            done.append((accuracy, macs / max_macs))
        volume = hypervolume_2d(done, DIRECTIONS, REFERENCE) if done else 0.0
        curve.append((round(seconds, 1), epochs, round(volume, 6)))
    return {"sampler": run["sampler"], "seed": run["seed"], "wall_seconds": run["wall_seconds"],
            "counts": run["counts"], "hypervolume": curve[-1][2] if curve else 0.0,
            "fully_trained": len(done), "epochs": epochs, "curve": curve}


def summarise(scored: list[dict], methods: list[str]) -> dict:
    seeds = sorted({run["seed"] for run in scored})
    by = {(run["sampler"], run["seed"]): run for run in scored}
    summary = {}
    for method in methods:
        mine = [by[(method, seed)] for seed in seeds if (method, seed) in by]
        if not mine:
            continue
        row = {"hypervolume": [run["hypervolume"] for run in mine],
               "mean_hypervolume": statistics.fmean(run["hypervolume"] for run in mine),
               "evaluated": statistics.fmean(run["counts"]["evaluated"] for run in mine),
               "fully_trained": statistics.fmean(run["fully_trained"] for run in mine),
               "epochs": statistics.fmean(run["epochs"] for run in mine)}
        if method != "random":
            paired = [by[(method, seed)]["hypervolume"] - by[("random", seed)]["hypervolume"] for seed in seeds
                      if (method, seed) in by and ("random", seed) in by]
            if paired:
                row["minus_random"] = paired
                row["mean_minus_random"] = statistics.fmean(paired)
                row["wins_against_random"] = sum(value > 0 for value in paired)
        summary[method] = row
    return summary


def space_max_macs(options: argparse.Namespace) -> int:
    from nasscale.evaluate.data import load_splits, native_resolution
    from nasscale.space.deployment import at_resolution
    from nasscale.space.extent import mac_range
    from nasscale.space.parsing import load_space

    train, _ = load_splits(options.data, max_train_samples=10, max_validation_samples=10)
    space = at_resolution(load_space(options.space), native_resolution(train))
    return mac_range(space, in_channels=train.in_channels, num_classes=train.num_classes)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--samplers", default="local,local+mo-asha,random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--wall-seconds", type=float, default=300, help="each run's --timeout")
    parser.add_argument("--max-trials", type=int, default=2048, help="--trials: more than fit in the time")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-train-samples", type=int, default=3000)
    parser.add_argument("--population-size", type=int, default=8)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    methods = [name.strip() for name in options.samplers.split(",") if name.strip()]
    max_macs = space_max_macs(options)
    seeds = range(options.first_seed, options.first_seed + options.seeds)
    command = ("python benchmarks/sampler_live.py " + " ".join(
        f"--{key.replace('_', '-')} {value}" for key, value in vars(options).items() if key != "output"))
    settings = {"command": command, "space_max_macs": max_macs, "python": platform.python_version(),
                "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(),
                "date": datetime.now().isoformat(timespec="seconds"),
                "hypervolume": "fully trained trials' (validation accuracy, MACs / space_max_macs), reference (0, 1)"}
    print(f"live samplers: {', '.join(methods)} on {options.space}/{options.data}, seeds {list(seeds)}, "
          f"{options.wall_seconds:g} s each, {options.jobs} at a time", flush=True)
    scored: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasscale-live-") as folder, \
            ProcessPoolExecutor(options.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_one, options, method, seed, folder) for seed in seeds for method in methods]
        for future in as_completed(futures):
            scored.append(score(future.result(), max_macs))
            run = scored[-1]
            print(f"  {run['sampler']:16s} seed {run['seed']}: hypervolume {run['hypervolume']:.4f}, "
                  f"{run['counts']['evaluated']} evaluated ({run['fully_trained']} fully trained, "
                  f"{run['epochs']} epochs) in {run['wall_seconds']:.0f} s", flush=True)
            write(options.output, settings, scored, methods, time.perf_counter() - started)
    summary = summarise(scored, methods)
    print(f"\n{'method':16s} {'hypervolume':>12s} {'minus random':>13s} {'wins':>5s} {'evaluated':>9s} "
          f"{'trained':>8s} {'epochs':>7s}")
    for method, row in summary.items():
        print(f"{method:16s} {row['mean_hypervolume']:>12.4f} {row.get('mean_minus_random', float('nan')):>+13.4f} "
              f"{row.get('wins_against_random', '-')!s:>5s} {row['evaluated']:>9.1f} {row['fully_trained']:>8.1f} "
              f"{row['epochs']:>7.0f}")
    print(f"saved {options.output}")


def write(output: Path, settings: dict, scored: list[dict], methods: list[str], seconds: float) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"settings": settings | {"load_average_now": os.getloadavg()},
                                  "summary": summarise(scored, methods), "wall_seconds": seconds,
                                  "runs": scored}, indent=1))


if __name__ == "__main__":
    main()
