"""Latency lookup table: how long it takes to build, and how well the sum of its parts predicts a whole network.

For each space: build the table with its defaults (every distinct stem, block and head timed, the fastest of 25
runs interleaved over all parts, then the interaction factor fitted on 40 calibration architectures), then sample
architectures that played no part in building it, measure each end to end (the fastest of 25 runs, interleaved
over the sample) and compare with the prediction. Reports the share within +-10% and the median absolute and
signed error of the calibrated prediction and of the plain sum of parts (plus the empty network's overhead), and
of the calibrated prediction against each network's median run. CPU, batch 1, one thread; each space twice: with
the wall clock (what a user waits) and with the thread's CPU time.

    python benchmarks/latency_predictor.py [--spaces mnas,tiny] [--clocks wall,cpu] [--validate 50] [--seed 1]
                                           [--save-tables DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

from nasscale.evaluate.latency_calibration import build_latency_table, validate_predictor
from nasscale.space.parsing import load_space

RESULTS = Path(__file__).parent / "results" / "latency_predictor.json"
# Input channels and classes per space: ImageNet-shaped for the published spaces, digits-shaped for tiny.
SHAPES = {"tiny": (1, 10)}
DEFAULT_SHAPE = (3, 1000)


def run_space(name: str, *, clock: str, validate: int, seed: int, threads: int, tables: Path | None) -> dict:
    space = load_space(name)
    in_channels, num_classes = SHAPES.get(name, DEFAULT_SHAPE)
    started = time.perf_counter()

    shown = 0.0

    def progress(done: int, total: int, what: str) -> None:
        nonlocal shown
        if time.perf_counter() - shown > 5 or done == total:
            shown = time.perf_counter()
            print(f"  {name} ({clock}): {done}/{total} runs ({what}), {shown - started:.0f} s", file=sys.stderr)

    table = build_latency_table(space, in_channels=in_channels, num_classes=num_classes, threads=threads,
                                clock=clock, on_progress=progress)
    if tables is not None:
        table.save(tables / f"latency_table_{name}_{clock}.json")

    validation = validate_predictor(table, space, validate, seed=seed)
    for row in validation.rows:
        print(f"  {name} ({clock}): {row.arch_id} predicted {row.predicted_ms:.2f} ms, fastest run "
              f"{row.measured_ms:.2f} ms ({row.relative_error():+.1%}), median {row.measured_median_ms:.2f} ms",
              file=sys.stderr)
    return {"space": name, "clock": clock, "in_channels": in_channels, "num_classes": num_classes,
            "resolutions": [table.resolution] if table.resolution else list(space.resolution.values()),
            "parts": len(table.entries), "table_build_seconds": table.build_seconds,
            "overhead_ms": table.overhead_ms, "interaction_factor": table.interaction_factor,
            "validation": validation.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", default="mnas,tiny")
    parser.add_argument("--clocks", default="wall,cpu")
    parser.add_argument("--validate", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save-tables", type=Path, default=None, help="Also write each table into this folder.")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Timings are only as steady as the machine: the load averages say what else it ran.
    results = {"torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
               "threads": arguments.threads, "batch_size": 1, "cpu_count": os.cpu_count(),
               "load_average_before": os.getloadavg(),
               "spaces": [run_space(name, clock=clock, validate=arguments.validate, seed=arguments.seed,
                                    threads=arguments.threads, tables=arguments.save_tables)
                          for name in arguments.spaces.split(",") for clock in arguments.clocks.split(",")]}
    results["load_average_after"] = os.getloadavg()
    RESULTS.write_text(json.dumps(results, indent=2))
    for space in results["spaces"]:
        validation = space["validation"]
        kinds = ("calibrated", "sum_of_parts", "calibrated_for_speed", "calibrated_against_median")
        figures = {kind: validation[kind] for kind in kinds}
        shown = "; ".join(f"{kind}: within +-10% {values['share_within_10_percent']:.0%}, median |error| "
                          f"{values['median_absolute_error']:.1%}, bias {values['median_signed_error']:+.1%}"
                          for kind, values in figures.items())
        print(f"{space['space']} ({space['clock']} clock): {space['parts']} parts timed in "
              f"{space['table_build_seconds']:.0f} s, factor {space['interaction_factor']:.3f}, machine speed "
              f"factor {validation['speed']:.3f}; "
              f"{validation['architectures']} architectures, {shown}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
