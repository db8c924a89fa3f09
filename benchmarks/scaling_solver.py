"""Compound-scaling solver and ladders: how fast, and how close to the MAC budget.

Times the full analytic (alpha, beta, gamma) grid for EfficientNet-B0 and a budget-exact ladder phi = 1..7.
Timings are reported against references measured in the same run, so they mean something on a noisy machine:
grid time per candidate against one ``cost(b0)`` call, and the cached grid against the naive loop
(``scale_arch`` + ``cost`` per candidate, timed on a sample). Then prints our budget-exact ladder next to
EfficientNet's released B1-B7 (MACs against B0 x 2^phi) and EfficientNetV2-S scaled non-uniformly to the
V2-M/L budgets next to the published models.

With ``--evaluated-grid K``, also times what ``nasscale scale --study`` does on top: the K feasible candidates
closest to 2x of a digits-sized base, each proxy-trained for one epoch on digits, the most accurate winning.

    python benchmarks/scaling_solver.py [--repeats 5] [--evaluated-grid 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from nasscale.presets.efficientnet import efficientnet_b0
from nasscale.scale.allocation import efficientnetv2_comparison
from nasscale.scale.ladder import efficientnet_ladder_comparison, scale_ladder
from nasscale.scale.solver import EFFICIENTNET_COMPOUND, solve_coefficients
from nasscale.spec.arch import Arch
from nasscale.spec.cost import cost
from nasscale.spec.rescaling import scale_arch
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import BlockType
from nasscale.units import format_count

RESULTS = Path(__file__).parent / "results" / "scaling_solver.json"
PHIS = range(1, 8)


def median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def naive_seconds_per_candidate(base, rows, sample: int = 300) -> float:
    """The uncached path the grid avoids: rebuild and cost every candidate."""
    chosen = random.Random(0).sample(rows, sample)
    start = time.perf_counter()
    for row in chosen:
        cost(scale_arch(base, width=row.beta, depth=row.alpha, resolution=row.resolution))
    return (time.perf_counter() - start) / sample


def timings(base, repeats: int) -> dict:
    cost_call = median_seconds(lambda: cost(base), 20 * repeats)
    grid = median_seconds(lambda: solve_coefficients(base), repeats)  # a fresh cost cache every run
    result = solve_coefficients(base)
    per_candidate = grid / len(result.rows)
    naive = naive_seconds_per_candidate(base, list(result.rows))
    ladder = median_seconds(lambda: scale_ladder(base, PHIS), repeats)
    raw_ladder = median_seconds(lambda: scale_ladder(base, PHIS, budget_exact=False), repeats)
    return {
        "cost_call_seconds": cost_call,
        "grid_seconds": grid,
        "grid_candidates": len(result.rows),
        "grid_feasible": len(result.feasible()),
        "grid_seconds_per_candidate": per_candidate,
        "grid_candidate_per_cost_call": per_candidate / cost_call,
        "naive_seconds_per_candidate": naive,
        "grid_speedup_over_naive": naive / per_candidate,
        "ladder_seconds": ladder,
        "ladder_cost_calls_equivalent": ladder / cost_call,
        "raw_ladder_seconds": raw_ladder,
        "best": result.best.as_dict(),
    }


def paper_coefficients(base) -> dict:
    """Where EfficientNet's (1.2, 1.1, 1.15) stands under each feasibility criterion."""
    by_macs = solve_coefficients(base).find(*EFFICIENTNET_COMPOUND)
    by_ideal = solve_coefficients(base, criterion="ideal").find(*EFFICIENTNET_COMPOUND)
    return {
        "coefficients": EFFICIENTNET_COMPOUND,
        "ideal_product": by_macs.ideal_product,
        "resolution": by_macs.resolution,
        "rounded_mac_ratio": by_macs.mac_ratio,
        "feasible_by_rounded_macs_at_5pct": by_macs.feasible,
        "feasible_by_ideal_product_at_5pct": by_ideal.feasible,
        "rounded_macs_tolerance_needed": abs(by_macs.mac_ratio / 2 - 1),
    }


def print_timings(figures: dict) -> None:
    print(f"one cost(b0) call            {figures['cost_call_seconds'] * 1e6:9.1f} us")
    print(f"full grid ({figures['grid_candidates']} candidates)  {figures['grid_seconds'] * 1e3:9.1f} ms  "
          f"({figures['grid_feasible']} feasible)")
    print(f"  per candidate              {figures['grid_seconds_per_candidate'] * 1e6:9.2f} us  "
          f"= {figures['grid_candidate_per_cost_call']:.3f} cost() calls; "
          f"{figures['grid_speedup_over_naive']:.0f}x faster than scale_arch + cost")
    print(f"budget-exact ladder phi 1..7 {figures['ladder_seconds'] * 1e3:9.1f} ms  "
          f"= {figures['ladder_cost_calls_equivalent']:.0f} cost() calls")
    print(f"raw ladder phi 1..7          {figures['raw_ladder_seconds'] * 1e3:9.1f} ms")


def print_ladder(rows: list[dict]) -> None:
    print(f"\n{'phi':>3} {'target':>9} {'ours':>9} {'ours dev':>9} {'res':>5} {'width':>6} {'method':>17} "
          f"{'released':>9} {'rel dev':>8} {'rel res':>7}")
    for row in rows:
        print(f"{row['phi']:>3} {format_count(row['target_macs']):>9} {format_count(row['ours_macs']):>9} "
              f"{row['ours_deviation']:>+9.2%} {row['ours_resolution']:>5} {row['ours_width']:>6.3f} "
              f"{row['ours_method']:>17} {format_count(row['released_macs']):>9} "
              f"{row['released_deviation']:>+8.1%} {row['released_resolution']:>7}")


def print_v2(rows: list[dict]) -> None:
    print("\nEfficientNetV2-S scaled non-uniformly (cap 480) vs published")
    for row in rows:
        print(f"{row['name']}: ours {format_count(row['ours_macs'])} MACs ({row['ours_deviation']:+.2%}), "
              f"{format_count(row['ours_params'])} params, {row['ours_profile']}, width {row['ours_width']:g}, "
              f"res {row['ours_resolution']}, layers {row['ours_stage_layers']} | published "
              f"{format_count(row['published_macs'])} MACs, {format_count(row['published_params'])} params, res "
              f"{row['published_resolution']}, layers {row['published_stage_layers']} "
              f"| params x{row['params_ratio']:.2f}")


def digits_base() -> Arch:
    """A searched-sized base for 8x8 digits upsampled to 16 px: 1 channel, 10 classes."""
    mb = BlockType.MBCONV
    return Arch(stages=(Stage(block=BlockType.SEPCONV, num_blocks=1, out_channels=16, stride=1),
                        Stage(block=mb, num_blocks=2, out_channels=24, stride=2, expand_ratio=3, se_ratio=0.25),
                        Stage(block=mb, num_blocks=2, out_channels=40, stride=2, expand_ratio=3)),
                stem_channels=16, head_channels=128, resolution=32, in_channels=1, num_classes=10)


def evaluated_grid(count: int) -> dict:
    """The analytic grid, then ``count`` distinct candidates trained as ``nasscale scale --study`` trains them."""
    from nasscale.scale.evaluation import ProxyEvaluator, distinct_candidates, evaluate_candidates
    from nasscale.search.config import SearchConfig

    base = digits_base()
    start = time.perf_counter()
    grid = solve_coefficients(base, tolerance=0.1)
    grid_seconds = time.perf_counter() - start
    evaluator = ProxyEvaluator(SearchConfig(data="digits", epochs=1, proxy_resolution=16), base.resolution, print)
    load_seconds = time.perf_counter() - start - grid_seconds
    closest = sorted(grid.feasible(), key=lambda row: (abs(row.deviation), row.params))
    candidates = distinct_candidates(
        closest, lambda row: scale_arch(base, width=row.beta, depth=row.alpha, resolution=row.resolution), count)
    train_start = time.perf_counter()
    result = evaluate_candidates(grid, candidates, evaluator, "grid")
    train_seconds = time.perf_counter() - train_start
    return {"base_macs": result.base_macs, "feasible": len(result.feasible()), "trained": len(candidates),
            "grid_seconds": grid_seconds, "data_seconds": load_seconds, "train_seconds": train_seconds,
            "seconds_per_candidate": train_seconds / len(candidates), "total_seconds": time.perf_counter() - start,
            "best": result.best.as_dict()}


def print_evaluated(figures: dict) -> None:
    print(f"\nevaluated grid on digits: {figures['trained']} of {figures['feasible']} feasible candidates trained "
          f"(1 epoch) in {figures['train_seconds']:.1f} s ({figures['seconds_per_candidate']:.1f} s each); "
          f"analytic grid {figures['grid_seconds'] * 1e3:.0f} ms, data {figures['data_seconds']:.1f} s, total "
          f"{figures['total_seconds']:.1f} s; best {figures['best']['alpha']:g}, {figures['best']['beta']:g}, "
          f"{figures['best']['gamma']:g} at accuracy {figures['best']['accuracy']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--evaluated-grid", type=int, default=0, metavar="K",
                        help="also time K proxy-trained grid candidates on digits")
    args = parser.parse_args()
    base = efficientnet_b0()
    figures = timings(base, args.repeats)
    print_timings(figures)
    ladder = efficientnet_ladder_comparison(PHIS)
    print_ladder(ladder)
    paper = paper_coefficients(base)
    print(f"\n(1.2, 1.1, 1.15): ideal product {paper['ideal_product']:.4f}, rounded MACs "
          f"{paper['rounded_mac_ratio']:.4f}x at resolution {paper['resolution']}; feasible at 5% by ideal product: "
          f"{paper['feasible_by_ideal_product_at_5pct']}, by rounded MACs: {paper['feasible_by_rounded_macs_at_5pct']}")
    v2 = efficientnetv2_comparison()
    print_v2(v2)
    results = {"timings": figures, "ladder": ladder, "paper_coefficients": paper, "efficientnetv2": v2}
    if args.evaluated_grid:
        results["evaluated_grid"] = evaluated_grid(args.evaluated_grid)
        print_evaluated(results["evaluated_grid"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
