"""Sampler quality: hypervolume of (validation accuracy, MACs) reached by NSGA-II, TPE and random search.

Each (sampler, seed) pair runs the real search, ``run_search(SearchConfig(...))``, with its own SQLite file
in a temporary folder, and the same trial budget. The hypervolume of a run is that of its evaluated trials'
(accuracy, MACs / max MACs) points with reference point (0, 1), where max MACs is the space's largest
architecture (``mac_range(space, in_channels, num_classes)``): a value in [0, 1], higher is better. A seed
fixes the training subset, the trials' initial weights and the sampler's seed, so the three samplers are
compared on the same data for each seed (paired). Results do not depend on timing: a rerun reproduces them.

The default is sized to run in about 20-30 minutes on 2 busy CPU cores (a trial takes ~2.5 s there, a run's
start ~6 s; 48 trials are 8 NSGA-II generations of 6 and give TPE 40 trials after its 8 random ones). The
hypervolume after half the budget (24 trials) is reported too, from the same runs:

    python benchmarks/sampler_hypervolume.py --space tiny --data fashion-mnist --trials 48 --seeds 3 \\
        --epochs 2 --max-train-samples 3000 --proxy-resolution 16 --population-size 6

A bigger run, e.g. ``--space mnas --trials 100 --epochs 3 --max-train-samples 10000 --jobs 8``, reproduces
the comparison at scale; ``--jobs`` runs that many searches side by side (each with 1 torch thread).

With ``--evaluator bench:FILE`` every trial is answered from a benchmark table (``nasscale bench build``)
instead of trained, so the comparison runs over many seeds in minutes, at equal compute (each trial is charged
the seconds its training took when the table was built). Each (sampler, seed) runs the real search up to the
largest of ``--budgets`` evaluations, in a journal file; the hypervolume and the share of the table's true
Pareto front found are read after each budget, and reported as means with 95% confidence intervals over
seeds, and as differences against random search paired by seed:

    python benchmarks/sampler_hypervolume.py --evaluator bench:benchmarks/tables/tiny-fashion-mnist.bench \
        --space tiny --data fashion-mnist --seeds 50 --budgets 25,50,100,200 --epochs 4 \
        --samplers nsga2,tpe,random,evolution,local --population-size 8 --jobs 2

A method NAME+mo-asha is that sampler with ``--pruner mo-asha`` (``--min-epochs``, ``--reduction-factor``),
run for ``--asha-trials`` evaluated trials. Budgets count compute in full evaluations (N allows N x epochs
epochs), so a run that stops trials early is read at the compute it spent, and only its fully trained trials
count towards its hypervolume; for every method the epochs it needed to reach random search's hypervolume at the
largest budget (per seed) are reported too. Curves (hypervolume after each trial, with the epochs spent) go to
``*_curves.json`` beside the results, which ``benchmarks/plot_samplers.py`` draws.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

from nasscale.search.pareto import hypervolume_2d, hypervolume_over_trials, pareto_front

RESULTS = Path(__file__).parent / "results" / "sampler_hypervolume.json"
TABULAR_RESULTS = Path(__file__).parent / "results" / "sampler_hypervolume_table.json"
SAMPLERS = ("nsga2", "tpe", "random")
DIRECTIONS = ("maximize", "minimize")  # accuracy, MACs / max MACs
REFERENCE = (0.0, 1.0)


def make_config(options: argparse.Namespace, sampler: str, seed: int, folder: str):
    from nasscale.search.config import SearchConfig

    return SearchConfig(space=options.space, data=options.data, study=f"{sampler}-seed{seed}",
                        storage=f"sqlite:///{Path(folder) / f'{sampler}-seed{seed}.db'}", trials=options.trials,
                        sampler=sampler, population_size=options.population_size, seed=seed, epochs=options.epochs,
                        max_train_samples=options.max_train_samples, proxy_resolution=options.proxy_resolution,
                        threads=1)


def run_one(options: argparse.Namespace, sampler: str, seed: int, folder: str) -> dict:
    """One search; returns its evaluated trials' (accuracy, MACs) in trial order, and its timings."""
    from nasscale.search.backends.optuna_backend import run_search
    from nasscale.search.record import ATTR_ACCURACY, ATTR_MACS, ATTR_TIMINGS
    from nasscale.search.trials import is_evaluated

    config = make_config(options, sampler, seed, folder)
    started = time.perf_counter()
    study = run_search(config)
    seconds = time.perf_counter() - started
    trials = [trial for trial in study.get_trials(deepcopy=False) if is_evaluated(trial)]
    points = [(trial.user_attrs[ATTR_ACCURACY], trial.user_attrs[ATTR_MACS])
              if trial.state.name == "COMPLETE" else None for trial in trials]
    train_seconds = [trial.user_attrs[ATTR_TIMINGS]["train_seconds"] for trial in trials
                     if ATTR_TIMINGS in trial.user_attrs]
    return {"sampler": sampler, "seed": seed, "points": points, "wall_seconds": seconds,
            "trials": len(trials), "failed": sum(point is None for point in points),
            "train_seconds_mean": statistics.fmean(train_seconds) if train_seconds else None}


def score(run: dict, max_macs: int) -> dict:
    normalised = [None if point is None else (point[0], point[1] / max_macs) for point in run["points"]]
    complete = [point for point in normalised if point is not None]
    running = hypervolume_over_trials(normalised, DIRECTIONS, REFERENCE)
    trained = [point for point in run["points"] if point is not None]
    front = [trained[index] for index in pareto_front(trained, DIRECTIONS)]
    return run | {
        "hypervolume": hypervolume_2d(complete, DIRECTIONS, REFERENCE),
        "hypervolume_at_half_budget": running[len(running) // 2 - 1] if len(running) >= 2 else None,
        "hypervolume_curve": running,
        "front": sorted(front, key=lambda point: point[1]),
        "best_accuracy": max((point[0] for point in complete), default=None),
        "min_macs": min((point[1] for point in trained), default=None),
    }


def describe(values: list[float]) -> dict[str, float | None]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values), "values": values}


def space_bounds(options: argparse.Namespace) -> tuple[int, int, int, int]:
    """(in_channels, num_classes, min MACs, max MACs) of the space for this data."""
    from nasscale.evaluate.data import load_splits
    from nasscale.space.extent import mac_range
    from nasscale.space.parsing import load_space

    train, _ = load_splits(options.data, max_train_samples=10, max_validation_samples=10)
    smallest, largest = mac_range(load_space(options.space), in_channels=train.in_channels,
                                  num_classes=train.num_classes)
    return train.in_channels, train.num_classes, smallest, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--trials", type=int, default=48, help="evaluated trials per run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per sampler")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-train-samples", type=int, default=3000)
    parser.add_argument("--proxy-resolution", type=int, default=16)
    parser.add_argument("--population-size", type=int, default=6, help="NSGA-II generation size")
    parser.add_argument("--jobs", type=int, default=1, help="searches run side by side")
    parser.add_argument("--output", type=Path, default=None, help=f"[{RESULTS.name}, or "
                        f"{TABULAR_RESULTS.name} with a table]")
    parser.add_argument("--evaluator", default="training", help="training, or bench:FILE to answer from a table")
    parser.add_argument("--budgets", default="25,50,100,200", help="with a table: evaluations to report at")
    parser.add_argument("--min-epochs", type=int, default=1, help="NAME+mo-asha: the first rung")
    parser.add_argument("--reduction-factor", type=int, default=3, help="NAME+mo-asha: eta")
    parser.add_argument("--asha-trials", type=int, default=450, help="NAME+mo-asha: evaluated trials per run")
    options = parser.parse_args()
    if options.evaluator.startswith("bench:"):
        compare_on_table(options)
        return
    options.output = options.output or RESULTS
    samplers = [name.strip() for name in options.samplers.split(",") if name.strip()]

    wall_started = time.perf_counter()
    load_before = os.getloadavg()
    in_channels, num_classes, min_macs, max_macs = space_bounds(options)
    settings = {
        "space": options.space, "data": options.data, "trials_per_run": options.trials, "seeds": options.seeds,
        "samplers": samplers, "epochs": options.epochs, "max_train_samples": options.max_train_samples,
        "validation": "the official test set, all of it" if options.data.startswith(("fashion-mnist", "cifar10"))
        else "a 20% stratified split", "proxy_resolution": options.proxy_resolution,
        "population_size": options.population_size, "batch_size": 64, "threads_per_search": 1,
        "jobs": options.jobs, "objectives": ["accuracy", "macs"], "in_channels": in_channels,
        "num_classes": num_classes, "space_min_macs": min_macs, "space_max_macs": max_macs,
        "hypervolume": "points (validation accuracy, MACs / space_max_macs), reference (0, 1)",
    }
    settings["command"] = (
        f"python benchmarks/sampler_hypervolume.py --space {options.space} --data {options.data} "
        f"--trials {options.trials} --seeds {options.seeds} --samplers {','.join(samplers)} "
        f"--epochs {options.epochs} --max-train-samples {options.max_train_samples} "
        f"--proxy-resolution {options.proxy_resolution} --population-size {options.population_size} "
        f"--jobs {options.jobs}")
    print(f"sampler hypervolume: space {options.space} (MACs {min_macs:,}..{max_macs:,} at {in_channels} "
          f"channel(s), {num_classes} classes), data {options.data} ({options.max_train_samples} training "
          f"images, {settings['validation']} to validate), {options.trials} trials per run, seeds "
          f"0..{options.seeds - 1}, samplers {', '.join(samplers)}, epochs {options.epochs}, proxy resolution "
          f"{options.proxy_resolution}, NSGA-II population {options.population_size}, jobs {options.jobs}",
          flush=True)

    jobs = [(sampler, seed) for seed in range(options.seeds) for sampler in samplers]
    runs = []
    with tempfile.TemporaryDirectory(prefix="nasscale-samplers-") as folder:
        if options.jobs > 1:
            with ProcessPoolExecutor(options.jobs, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(run_one, options, sampler, seed, folder) for sampler, seed in jobs]
                for future in futures:
                    runs.append(score(future.result(), max_macs))
                    report(runs[-1])
        else:
            for sampler, seed in jobs:
                runs.append(score(run_one(options, sampler, seed, folder), max_macs))
                report(runs[-1])

    summary: dict[str, dict] = {}
    for sampler in samplers:
        mine = sorted((run for run in runs if run["sampler"] == sampler), key=lambda run: run["seed"])
        summary[sampler] = {
            "hypervolume": describe([run["hypervolume"] for run in mine]),
            "hypervolume_at_half_budget": describe([run["hypervolume_at_half_budget"] for run in mine]),
            "best_accuracy": describe([run["best_accuracy"] for run in mine]),
            "wall_seconds_per_run": statistics.fmean(run["wall_seconds"] for run in mine),
            "train_seconds_per_trial": statistics.fmean(run["train_seconds_mean"] for run in mine),
        }
    ratios = {}
    if "random" in summary:
        baseline = {run["seed"]: run["hypervolume"] for run in runs if run["sampler"] == "random"}
        for sampler in samplers:
            if sampler == "random":
                continue
            paired = [run["hypervolume"] / baseline[run["seed"]] for run in runs if run["sampler"] == sampler]
            ratios[f"{sampler}/random"] = {
                "ratio_of_means": summary[sampler]["hypervolume"]["mean"] / summary["random"]["hypervolume"]["mean"],
                "paired_by_seed": describe(paired)}
    wall_seconds = time.perf_counter() - wall_started
    print()
    print(f"{'sampler':8s} {'hypervolume':>17s} {'at half budget':>17s} {'best accuracy':>15s} {'s/run':>7s}")
    for sampler, row in summary.items():
        print(f"{sampler:8s} {fmt(row['hypervolume'], 4):>17s} {fmt(row['hypervolume_at_half_budget'], 4):>17s} "
              f"{fmt(row['best_accuracy'], 3):>15s} {row['wall_seconds_per_run']:>7.0f}")
    for name, ratio in ratios.items():
        print(f"{name}: ratio of means {ratio['ratio_of_means']:.4f}, paired by seed "
              f"{fmt(ratio['paired_by_seed'], 4)}")
    print(f"wall {wall_seconds:.0f} s")
    settings |= {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                 "load_average_before": load_before, "load_average_after": os.getloadavg(),
                 "date": datetime.now().isoformat(timespec="seconds"), **versions()}
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({"settings": settings, "summary": summary, "ratios": ratios,
                                          "wall_seconds": wall_seconds, "runs": runs}, indent=2))
    print(f"saved {options.output}")


def report(run: dict) -> None:
    print(f"  {run['sampler']:7s} seed {run['seed']}: hypervolume {run['hypervolume']:.4f} "
          f"(half budget {run['hypervolume_at_half_budget']:.4f}), best accuracy {run['best_accuracy']:.3f}, "
          f"front {len(run['front'])}, {run['trials']} trials ({run['failed']} failed) in "
          f"{run['wall_seconds']:.0f} s, {run['train_seconds_mean']:.2f} s training per trial", flush=True)


def fmt(stats: dict, digits: int) -> str:
    std = stats["std"]
    return f"{stats['mean']:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{stats['mean']:.{digits}f}"


def versions() -> dict[str, str]:
    import optuna
    import torch

    return {"optuna": optuna.__version__, "torch": torch.__version__}


# ------------------------------------------------------------------------------------ on a benchmark table


ASHA_SUFFIX = "+mo-asha"  # --samplers local+mo-asha: that sampler with --pruner mo-asha


def tabular_config(options: argparse.Namespace, method: str, seed: int, folder: str, trials: int):
    from nasscale.search.config import SearchConfig

    sampler, asha = method.removesuffix(ASHA_SUFFIX), method.endswith(ASHA_SUFFIX)
    pruning = ({"pruner": "mo-asha", "min_epochs": options.min_epochs, "reduction_factor": options.reduction_factor}
               if asha else {})
    return SearchConfig(space=options.space, data=options.data, study=f"{method}-seed{seed}",
                        storage=f"journal:{Path(folder) / f'{method}-seed{seed}.journal'}", trials=trials,
                        sampler=sampler, population_size=options.population_size, seed=seed, epochs=options.epochs,
                        max_train_samples=options.max_train_samples, evaluator=options.evaluator, threads=1,
                        **pruning)


def run_tabular(options: argparse.Namespace, method: str, seed: int, folder: str, trials: int) -> dict:
    """One real search answered from the table: its evaluated trials in order, as (arch_id, validation accuracy
    or None for a trial stopped early or failed, MACs, epochs trained)."""
    from nasscale.search.backends.optuna_backend import run_search
    from nasscale.search.record import ATTR_ACCURACY, ATTR_ARCH_ID, ATTR_EPOCHS_TRAINED, ATTR_MACS
    from nasscale.search.results import trial_counts
    from nasscale.search.storage import quiet_optuna
    from nasscale.search.trials import is_evaluated

    quiet_optuna()  # a line per trial would be 150,000 lines
    started = time.perf_counter()
    study = run_search(tabular_config(options, method, seed, folder, trials))
    evaluated = [trial for trial in study.get_trials(deepcopy=False) if is_evaluated(trial)]
    points = [(trial.user_attrs[ATTR_ARCH_ID],
               trial.user_attrs[ATTR_ACCURACY] if trial.state.name == "COMPLETE" else None,
               trial.user_attrs[ATTR_MACS], trial.user_attrs.get(ATTR_EPOCHS_TRAINED, options.epochs))
              for trial in evaluated]
    return {"sampler": method, "seed": seed, "points": points, "wall_seconds": time.perf_counter() - started,
            "counts": trial_counts(study)}


def score_tabular(run: dict, budgets: list[int], epochs: int, max_macs: int, true_front: set[str]) -> dict:
    """After each budget of compute, counted in full evaluations (``budget x epochs`` epochs, so a run with early
    stopping spends the same as one without): the hypervolume of the fully trained trials, the share of the true
    front among them, and the evaluations made. Also the hypervolume after every evaluation, with the epochs spent
    so far (the curve the plot and the epochs-to-target figures read)."""
    spent, curve, done = 0, [], []
    for arch_id, accuracy, macs, trained in run["points"]:
        spent += trained
        if accuracy is not None:
            done.append((arch_id, accuracy, macs / max_macs))
        curve.append((spent, round(hypervolume_2d([(a, m) for _, a, m in done], DIRECTIONS, REFERENCE), 6)
                      if done else 0.0))
    scores = {}
    for budget in budgets:
        within = [index for index, (used, _) in enumerate(curve) if used <= budget * epochs]
        last = within[-1] if within else -1
        seen = {arch_id for arch_id, *_ in run["points"][:last + 1]}
        complete = {arch_id for arch_id, accuracy, *_ in run["points"][:last + 1] if accuracy is not None}
        scores[str(budget)] = {"hypervolume": curve[last][1] if within else 0.0,
                               "front_found": len(complete & true_front) / len(true_front),
                               "distinct": len(seen), "evaluations": last + 1, "fully_trained": len(complete)}
    return {"sampler": run["sampler"], "seed": run["seed"], "wall_seconds": run["wall_seconds"],
            "evaluations": len(run["points"]), "counts": run["counts"], "by_budget": scores,
            "curve": curve}


def epochs_to_reach(curve: list, target: float) -> int | None:
    """The epochs a run had spent when its hypervolume first reached ``target``; None if it never did."""
    return next((spent for spent, volume in curve if volume >= target - 1e-12), None)


def confidence_interval(values: list[float]) -> dict[str, float]:
    """Mean and the half-width of its two-sided 95% Student-t interval."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": math.nan, "n": len(values)}
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return {"mean": mean, "ci95": half, "n": len(values)}


def summarise_tabular(scored: list[dict], samplers: list[str], budgets: list[int]) -> dict:
    by = {(run["sampler"], run["seed"]): run for run in scored}
    seeds = sorted({run["seed"] for run in scored})
    summary: dict = {}
    for sampler in samplers:
        summary[sampler] = {}
        for budget in map(str, budgets):
            runs = [by[(sampler, seed)]["by_budget"][budget] for seed in seeds]
            row = {key: confidence_interval([run[key] for run in runs])
                   for key in ("hypervolume", "front_found", "distinct", "evaluations", "fully_trained")}
            if sampler != "random" and "random" in samplers:
                differences = [by[(sampler, seed)]["by_budget"][budget]["hypervolume"]
                               - by[("random", seed)]["by_budget"][budget]["hypervolume"] for seed in seeds]
                row["hypervolume_minus_random"] = confidence_interval(differences)
                row["win_rate_against_random"] = sum(difference > 0 for difference in differences) / len(seeds)
            summary[sampler][budget] = row
    return summary


def summarise_epochs_to_target(scored: list[dict], samplers: list[str], budget: int, epochs: int) -> dict:
    """Per seed, the epochs each method needed to reach random search's hypervolume after ``budget`` full
    evaluations of that seed (``budget x epochs`` epochs): the share of seeds that got there, and the median
    epochs and its ratio to random's compute, counting a seed that never got there as not reached."""
    by = {(run["sampler"], run["seed"]): run for run in scored}
    seeds = sorted({run["seed"] for run in scored})
    reference = budget * epochs
    result = {}
    for sampler in samplers:
        needed = [epochs_to_reach(by[(sampler, seed)]["curve"],
                                  by[("random", seed)]["by_budget"][str(budget)]["hypervolume"]) for seed in seeds]
        reached = sorted(value for value in needed if value is not None)
        median = statistics.median(needed_or_inf(needed)) if needed else math.inf
        result[sampler] = {"reached": len(reached) / len(seeds), "median_epochs": median,
                           "median_ratio_to_random": median / reference, "per_seed": needed,
                           "spent_epochs": statistics.fmean(by[(sampler, seed)]["curve"][-1][0] for seed in seeds)}
    return {"target": f"random search's hypervolume after {budget} full evaluations ({reference} epochs), per seed",
            "by_sampler": result}


def needed_or_inf(values: list[int | None]) -> list[float]:
    return [math.inf if value is None else float(value) for value in values]


def compare_on_table(options: argparse.Namespace) -> None:
    from nasscale.evaluate.benchmark_table import load_table
    from nasscale.search.benchmark_info import true_front

    started = time.perf_counter()
    table_path = options.evaluator.removeprefix("bench:")
    table = load_table(table_path)
    budgets = sorted({int(part) for part in options.budgets.split(",") if part.strip()})
    samplers = [name.strip() for name in options.samplers.split(",") if name.strip()]
    front, best_hypervolume = true_front(table)
    front_ids = {row.arch_id for row in front}
    max_macs = max(row.macs for row in table.rows.values())
    options.max_train_samples = table.meta["recipe"]["max_train_samples"]
    print(f"samplers on {table_path}: {len(table.rows)} architectures of {table.meta['space']} at "
          f"{table.meta['resolution']} px on {table.meta['data']}, true front {len(front)} architectures, "
          f"hypervolume {best_hypervolume:.4f}; {options.seeds} seeds, budgets {budgets}, epochs {options.epochs}",
          flush=True)
    jobs = [(sampler, seed) for seed in range(options.seeds) for sampler in samplers]
    scored = []
    with tempfile.TemporaryDirectory(prefix="nasscale-tabular-") as folder:
        arguments = [(options, sampler, seed, folder,
                      options.asha_trials if sampler.endswith(ASHA_SUFFIX) else max(budgets)) for sampler, seed in jobs]
        partial = (options.output or TABULAR_RESULTS).with_suffix(".partial.json")
        with ProcessPoolExecutor(options.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_tabular, *item) for item in arguments]
            for done, future in enumerate(as_completed(futures), start=1):
                scored.append(score_tabular(future.result(), budgets, options.epochs, max_macs, front_ids))
                if done % 10 == 0 or done == len(futures):  # a kill loses at most the last ten runs
                    partial.write_text(json.dumps(scored, separators=(",", ":")))
                    print(f"  {done} of {len(futures)} runs, {time.perf_counter() - started:.0f} s", flush=True)
    scored.sort(key=lambda run: (samplers.index(run["sampler"]), run["seed"]))
    partial.unlink(missing_ok=True)
    summary = summarise_tabular(scored, samplers, budgets)
    to_target = summarise_epochs_to_target(scored, samplers, max(budgets), options.epochs) if "random" in samplers \
        else None
    wall_seconds = time.perf_counter() - started
    print(f"\n{'sampler':16s} {'budget':>6s} {'hypervolume (95% CI)':>22s} {'minus random':>18s} "
          f"{'true front found':>17s} {'distinct':>8s}")
    for sampler, rows in summary.items():
        for budget, row in rows.items():
            difference = row.get("hypervolume_minus_random")
            print(f"{sampler:16s} {budget:>6s} {row['hypervolume']['mean']:>13.4f} ± {row['hypervolume']['ci95']:.4f}"
                  f" {'' if difference is None else format(difference['mean'], '+.4f'):>10s}"
                  f"{'' if difference is None else ' ± ' + format(difference['ci95'], '.4f'):>8s}"
                  f" {row['front_found']['mean']:>10.1%} ± {row['front_found']['ci95']:.1%}"
                  f" {row['distinct']['mean']:>8.1f}")
    if to_target is not None:
        print(f"\nepochs to reach {to_target['target']}:")
        for sampler, row in to_target["by_sampler"].items():
            print(f"  {sampler:16s} reached in {row['reached']:.0%} of seeds, median {row['median_epochs']:g} epochs "
                  f"({row['median_ratio_to_random']:.2f} of random's), {row['spent_epochs']:.0f} epochs spent per run")
    print(f"true front hypervolume {best_hypervolume:.4f}; wall {wall_seconds:.0f} s")
    output = options.output or TABULAR_RESULTS
    output.parent.mkdir(parents=True, exist_ok=True)
    settings = {"table": table_path, "table_meta": {key: table.meta[key] for key in ("space", "data", "resolution",
                                                                                      "recipe", "architectures")},
                "samplers": samplers, "seeds": options.seeds, "budgets": budgets, "epochs": options.epochs,
                "population_size": options.population_size, "jobs": options.jobs,
                "mo_asha": {"min_epochs": options.min_epochs, "reduction_factor": options.reduction_factor,
                            "trials": options.asha_trials},
                "budget_unit": "full evaluations' compute: a budget of N allows N x epochs epochs (a run with "
                               "MO-ASHA evaluates more architectures in it)",
                "true_front": sorted(front_ids), "true_front_hypervolume": best_hypervolume,
                "hypervolume": "points (validation accuracy, MACs / largest MACs in the table), reference (0, 1)",
                "command": f"python benchmarks/sampler_hypervolume.py --evaluator {options.evaluator} --space "
                           f"{options.space} --data {options.data} --seeds {options.seeds} --budgets "
                           f"{','.join(map(str, budgets))} --epochs {options.epochs} --samplers {','.join(samplers)} "
                           f"--population-size {options.population_size} --min-epochs {options.min_epochs} "
                           f"--reduction-factor {options.reduction_factor} --asha-trials {options.asha_trials} "
                           f"--jobs {options.jobs}",
                "date": datetime.now().isoformat(timespec="seconds"), **versions()}
    output.write_text(json.dumps({"settings": settings, "summary": summary, "epochs_to_target": to_target,
                                  "wall_seconds": wall_seconds,
                                  "runs": [{key: value for key, value in run.items() if key != "curve"}
                                           for run in scored]}, indent=2))
    curves = output.with_name(output.stem + "_curves.json")  # compact: one (epochs, hypervolume) pair per trial
    curves.write_text(json.dumps([{"sampler": run["sampler"], "seed": run["seed"], "curve": run["curve"]}
                                  for run in scored], separators=(",", ":")))
    print(f"saved {output} and {curves}")


if __name__ == "__main__":
    main()
