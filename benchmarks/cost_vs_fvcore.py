"""Analytic cost against build + fvcore trace: speed ratio and mismatches.

For every preset and for seeded random architectures, times ``cost(arch)`` (no torch) and the oracle
path (build the model, trace it with fvcore, count its parameters) on the same Arch object, checks that
params and MACs agree to the unit, and prints the per-architecture speed-up.

Both sides are timed the same way, in the same run, so the ratio means something on a noisy machine even
where absolute times do not: each is the best of several runs (noise only ever adds time). ``cost()`` keeps
no cache between calls, so each of its runs recomputes everything from the Arch. Two random sets:
``random`` draws what compound scaling takes (``random_arch``'s default), ``random_all`` every block type
and option (``scalable=False``, as the agreement tests).

    python benchmarks/cost_vs_fvcore.py [--random 100] [--skip-large] [--no-presets]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from nasscale.models.build import build
from nasscale.models.counts import count_parameters, example_input, fvcore_macs
from nasscale.presets.registry import PRESETS
from nasscale.spec import arch as arch_module
from nasscale.spec import channels, geometry
from nasscale.spec import cost as cost_model
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.random_arch import random_arch

RESULTS = Path(__file__).parent / "results" / "cost_vs_fvcore.json"
LARGE = {"efficientnet_b6", "efficientnet_b7", "efficientnetv2_l", "convnext_large"}
GROUPS = ("presets", "random", "random_all")
ANALYTIC_CALLS = 50  # per timed run: one call takes tens of microseconds, too short to time alone
ANALYTIC_RUNS = 5


def memoised_functions() -> list[str]:
    """Cost-model functions with a cache (functools.lru_cache and the like): timing repeated calls of those on
    one Arch would time cache hits."""
    modules = (cost_model, geometry, channels, arch_module)
    return [f"{module.__name__}.{name}" for module in modules for name, value in vars(module).items()
            if hasattr(value, "cache_clear")]


def analytic_seconds(arch: Arch) -> float:
    """Seconds per cost(arch) call, best of ANALYTIC_RUNS runs of ANALYTIC_CALLS calls."""
    best = float("inf")
    for _ in range(ANALYTIC_RUNS):
        start = time.perf_counter()
        for _ in range(ANALYTIC_CALLS):
            cost(arch)
        best = min(best, (time.perf_counter() - start) / ANALYTIC_CALLS)
    return best


def oracle(arch: Arch, runs: int) -> tuple[float, int, int]:
    """Best seconds of ``runs`` builds + fvcore traces, and the params and MACs they count."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        model = build(arch).eval()
        macs = fvcore_macs(model, example_input(arch))
        params = count_parameters(model)
        best = min(best, time.perf_counter() - start)
    return best, params, macs


def measure(group: str, name: str, arch: Arch, oracle_runs: int) -> dict:
    analytic = cost(arch)
    oracle_seconds, params, macs = oracle(arch, oracle_runs)
    seconds = analytic_seconds(arch)  # the same Arch object as the oracle's
    return {
        "group": group,
        "name": name,
        "params": analytic.params,
        "macs": analytic.macs,
        "analytic_seconds": seconds,
        "oracle_seconds": oracle_seconds,
        "speedup": oracle_seconds / seconds,
        "match": params == analytic.params and macs == analytic.macs,
    }


def architectures(options: argparse.Namespace) -> list[tuple[str, str, Arch]]:
    archs = []
    if not options.no_presets:
        archs += [("presets", name, preset.arch()) for name, preset in PRESETS.items()
                  if not (options.skip_large and name in LARGE)]
    archs += [("random", f"random_{seed}", random_arch(random.Random(seed))) for seed in range(options.random)]
    archs += [("random_all", f"random_all_{seed}", random_arch(random.Random(seed), scalable=False))
              for seed in range(options.random)]
    return archs


def group_summary(rows: list[dict]) -> dict:
    speedups = [row["speedup"] for row in rows]
    return {
        "architectures": len(rows),
        "mismatches": sum(not row["match"] for row in rows),
        "median_speedup": statistics.median(speedups),
        "min_speedup": min(speedups),
        "median_analytic_seconds": statistics.median(row["analytic_seconds"] for row in rows),
        "median_oracle_seconds": statistics.median(row["oracle_seconds"] for row in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=100, help="random architectures in each random set")
    parser.add_argument("--skip-large", action="store_true", help="skip B6, B7, V2-L and ConvNeXt-L")
    parser.add_argument("--no-presets", action="store_true", help="random architectures only")
    parser.add_argument("--oracle-runs", type=int, default=3, help="build + trace runs per architecture (best)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the oracle (1: these models are small, and on a shared machine "
                             "more threads make it slower, not faster)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    options = parser.parse_args()
    if memoised_functions():
        raise SystemExit(f"{', '.join(memoised_functions())} cache results: clear them before each timed call")
    torch.set_num_threads(options.threads)
    print(f"analytic: cost(arch), best of {ANALYTIC_RUNS} runs of {ANALYTIC_CALLS} calls (no cache between calls); "
          f"oracle: build + fvcore trace + parameter count, best of {options.oracle_runs} runs, "
          f"{options.threads} torch threads", flush=True)
    oracle(random_arch(random.Random(0)), 1)  # imports fvcore and warms torch up outside any timing
    rows = []
    for group, name, arch in architectures(options):
        rows.append(measure(group, name, arch, options.oracle_runs))
        if group == "presets":
            row = rows[-1]
            print(f"{name:20s} {row['analytic_seconds'] * 1e6:7.1f} us  {row['oracle_seconds'] * 1e3:8.1f} ms  "
                  f"speed-up {row['speedup']:>8.0f}x  match {row['match']}", flush=True)
    groups = {group: group_summary([row for row in rows if row["group"] == group]) for group in GROUPS
              if any(row["group"] == group for row in rows)}
    summary = {"architectures": len(rows), "mismatches": sum(not row["match"] for row in rows),
               "torch_threads": torch.get_num_threads(), "oracle_runs": options.oracle_runs,
               "analytic_runs": ANALYTIC_RUNS, "analytic_calls_per_run": ANALYTIC_CALLS, **groups}
    for group, figures in groups.items():
        print(f"{group:10s} n={figures['architectures']:3d}  median {figures['median_speedup']:7.0f}x  "
              f"min {figures['min_speedup']:7.0f}x  mismatches {figures['mismatches']}  "
              f"(median cost() {figures['median_analytic_seconds'] * 1e6:.1f} us, "
              f"build + trace {figures['median_oracle_seconds'] * 1e3:.1f} ms)")
    print(f"mismatches {summary['mismatches']} of {summary['architectures']}")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    print(f"saved {options.output}")


if __name__ == "__main__":
    main()
