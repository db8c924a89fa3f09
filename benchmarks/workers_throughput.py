"""Search throughput with 1 and 2 workers: trials per hour, and 2 workers against 1 as a ratio.

Runs real searches through the command line, as a user would, each in a fresh temporary folder:

- optuna-sqlite: 1 or 2 ``nasscale search`` processes on one SQLite study;
- optuna-postgresql: the same on PostgreSQL, with ``--postgres-url URL`` (or NASSCALE_TEST_POSTGRES_URL);
- ray: one ``nasscale search --backend ray --workers 1|2`` on a local Ray runtime (``--ray-address`` to
  use a running cluster instead).

Every trial trains with one torch thread (``--threads 1``, ``--cpus-per-trial 1``). The random sampler
seeds trial n with seed + n, so 1 and 2 workers train the same architectures: the work is the same.
Throughput is taken from the trials' own ``started_at``/``finished_at`` stamps (first start to last end:
process start-up and Ray's start are left out, the first trial's dataset resizing is in); the wall time of
the whole command is reported beside it. Each setting runs ``--repeats`` times; the median counts. The
target is >= 1.7x with 2 workers on a 2-core machine. Training times are wall times on whatever else the
machine runs, so a shared machine lowers the ratio: the load averages before and after each run are
recorded. Reproduce with

    python benchmarks/workers_throughput.py --trials 12 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
import torch

from nasscale.backends.optuna_backend import ATTR_FINISHED_AT, ATTR_STARTED_AT, is_evaluated, make_storage

RESULTS = Path(__file__).parent / "results" / "workers_throughput.json"
TARGET_RATIO = 1.7


def search_arguments(options: argparse.Namespace, storage: str, study: str) -> list[str]:
    return [sys.executable, "-m", "nasscale.cli", "search", "--space", options.space, "--data", options.data,
            "--epochs", str(options.epochs), "--proxy-resolution", str(options.proxy_resolution),
            "--trials", str(options.trials), "--sampler", "random", "--storage", storage, "--study", study,
            "--json"]


def commands(path: str, workers: int, storage: str, study: str, options: argparse.Namespace) -> list[list[str]]:
    """The processes one run starts: N Optuna workers, or one Ray driver with N actors."""
    base = search_arguments(options, storage, study)
    if path == "ray":
        ray = ["--backend", "ray", "--workers", str(workers), "--cpus-per-trial", "1"]
        if options.ray_address:
            ray += ["--ray-address", options.ray_address]
        return [base + ray]
    return [base + ["--threads", "1"] for _ in range(workers)]


def fresh_storage(path: str, folder: Path, options: argparse.Namespace) -> str:
    if path == "optuna-postgresql":
        return options.postgres_url
    return f"sqlite:///{folder / 'study.db'}"


def run_once(path: str, workers: int, options: argparse.Namespace, run_index: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="nasscale-throughput-") as folder_name:
        folder = Path(folder_name)
        storage = fresh_storage(path, folder, options)
        # A fresh study per run (a PostgreSQL run shares the database with the others).
        study = f"throughput-{path}-{workers}-{run_index}-{os.getpid()}"
        load_before = os.getloadavg()
        started = time.monotonic()
        processes = [subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
                     for command in commands(path, workers, storage, study, options)]
        for process in processes:
            _, err = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"{path} with {workers} workers failed: {err.strip()}")
        wall = time.monotonic() - started
        trials = [trial for trial in optuna.load_study(study_name=study, storage=make_storage(storage)).get_trials()
                  if is_evaluated(trial)]
    starts = [trial.user_attrs[ATTR_STARTED_AT] for trial in trials]
    ends = [trial.user_attrs[ATTR_FINISHED_AT] for trial in trials]
    span = max(ends) - min(starts)
    busy = sum(end - start for start, end in zip(starts, ends, strict=True))
    return {"trials": len(trials), "span_seconds": span, "wall_seconds": wall,
            "trials_per_hour": len(trials) / span * 3600, "wall_trials_per_hour": len(trials) / wall * 3600,
            "mean_trial_seconds": busy / len(trials), "trials_in_flight": busy / span,
            "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}


def measure(path: str, options: argparse.Namespace) -> dict:
    result = {}
    for workers in (1, 2):
        runs = []
        for run_index in range(options.repeats):
            run = run_once(path, workers, options, run_index)
            print(f"{path:<18} {workers} worker{'s' if workers > 1 else ' '} run {run_index + 1}: "
                  f"{run['trials_per_hour']:>7.0f} trials/h (wall {run['wall_trials_per_hour']:>6.0f}/h), "
                  f"{run['trials_in_flight']:.2f} in flight, load {run['load_average_before'][0]:.1f}", flush=True)
            runs.append(run)
        result[f"{workers}_workers"] = {
            "trials_per_hour": statistics.median(run["trials_per_hour"] for run in runs),
            "wall_trials_per_hour": statistics.median(run["wall_trials_per_hour"] for run in runs),
            "runs": runs,
        }
    one, two = result["1_workers"], result["2_workers"]
    result["ratio_2_to_1"] = two["trials_per_hour"] / one["trials_per_hour"]
    result["wall_ratio_2_to_1"] = two["wall_trials_per_hour"] / one["wall_trials_per_hour"]
    result["meets_target"] = result["ratio_2_to_1"] >= TARGET_RATIO
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--proxy-resolution", type=int, default=32)
    parser.add_argument("--space", default="tiny")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--postgres-url", default=os.environ.get("NASSCALE_TEST_POSTGRES_URL"))
    parser.add_argument("--ray-address", default=None, help="join this Ray cluster instead of a local runtime")
    parser.add_argument("--paths", default="optuna-sqlite,optuna-postgresql,ray")
    parser.add_argument("--note", default="", help="recorded with the results, e.g. what else the machine ran")
    options = parser.parse_args()
    paths = [path for path in options.paths.split(",") if path != "optuna-postgresql" or options.postgres_url]
    results = {path: measure(path, options) for path in paths}
    settings = {
        "command": "python benchmarks/workers_throughput.py " + " ".join(sys.argv[1:]),
        "space": options.space, "data": options.data, "epochs": options.epochs,
        "proxy_resolution": options.proxy_resolution, "trials": options.trials, "repeats": options.repeats,
        "sampler": "random", "torch_threads_per_trial": 1, "target_ratio": TARGET_RATIO,
        "ray_address": options.ray_address or "local runtime",
        "python": platform.python_version(), "torch": torch.__version__, "optuna": optuna.__version__,
        "cpu_count": os.cpu_count(), "date": datetime.now().isoformat(timespec="seconds"), "note": options.note,
    }
    summary = {path: {"trials_per_hour_1_worker": round(result["1_workers"]["trials_per_hour"]),
                      "trials_per_hour_2_workers": round(result["2_workers"]["trials_per_hour"]),
                      "ratio_2_to_1": round(result["ratio_2_to_1"], 3),
                      "wall_ratio_2_to_1": round(result["wall_ratio_2_to_1"], 3),
                      "meets_target": result["meets_target"]}
               for path, result in results.items()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"settings": settings, "summary": summary, "results": results}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
