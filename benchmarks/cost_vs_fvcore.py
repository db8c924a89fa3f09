"""Analytic cost against build + fvcore trace: speed ratio and mismatches.

For every preset and for seeded random architectures, times ``cost(arch)`` (no torch) and the oracle
path (build the model, trace it with fvcore), checks that params and MACs agree to the unit, and
prints the per-architecture speed-up. Both are measured in the same run, so the ratio is meaningful on
a noisy machine even where absolute times are not.

    python benchmarks/cost_vs_fvcore.py [--random 100] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from nasscale.build import build
from nasscale.cost import cost
from nasscale.measure import count_parameters, example_input, fvcore_macs
from nasscale.presets import PRESETS
from nasscale.testing import random_arch

RESULTS = Path(__file__).parent / "results" / "cost_vs_fvcore.json"
LARGE = {"efficientnet_b6", "efficientnet_b7", "efficientnetv2_l", "convnext_large"}


def time_analytic(arch, repeats: int = 200) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        cost(arch)
    return (time.perf_counter() - start) / repeats


def time_oracle(arch) -> tuple[float, int, int]:
    start = time.perf_counter()
    model = build(arch).eval()
    macs = fvcore_macs(model, example_input(arch))
    params = count_parameters(model)
    return time.perf_counter() - start, params, macs


def measure(name: str, arch) -> dict:
    analytic = cost(arch)
    analytic_seconds = time_analytic(arch)
    oracle_seconds, params, macs = time_oracle(arch)
    return {
        "name": name,
        "params": analytic.params,
        "macs": analytic.macs,
        "analytic_seconds": analytic_seconds,
        "oracle_seconds": oracle_seconds,
        "speedup": oracle_seconds / analytic_seconds,
        "match": params == analytic.params and macs == analytic.macs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=100, help="number of random architectures")
    parser.add_argument("--skip-large", action="store_true", help="skip B6, B7, V2-L and ConvNeXt-L")
    options = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name, preset in PRESETS.items():
        if options.skip_large and name in LARGE:
            continue
        rows.append(measure(name, preset.arch()))
        print(f"{name:18s} speed-up {rows[-1]['speedup']:>9.0f}x  match {rows[-1]['match']}", flush=True)
    for seed in range(options.random):
        rows.append(measure(f"random_{seed}", random_arch(random.Random(seed))))
    preset_rows = [row for row in rows if not row["name"].startswith("random_")]
    random_rows = [row for row in rows if row["name"].startswith("random_")]
    summary = {
        "architectures": len(rows),
        "mismatches": sum(not row["match"] for row in rows),
        "preset_median_speedup": statistics.median(row["speedup"] for row in preset_rows),
        "preset_min_speedup": min(row["speedup"] for row in preset_rows),
        "random_median_speedup": statistics.median(row["speedup"] for row in random_rows) if random_rows else None,
        "random_min_speedup": min(row["speedup"] for row in random_rows) if random_rows else None,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(summary, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
