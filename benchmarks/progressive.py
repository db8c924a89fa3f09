"""Progressive learning against fixed-size training, and each named recipe against fast-proxy, on one model.

EfficientNetV2's claim (Tan & Le 2021, section 4): training small images first, with weak regularization, and
growing both reaches the accuracy of fixed-size training in less time. Measured here, per seed, on the same
architecture, data, epochs and recipe (``efficientnetv2-progressive``):

- ``fixed``: every epoch at the deployment resolution, with the ramp's final regularization (RandAugment
  magnitude, mixup and dropout at their end values): the recipe without progressive learning;
- ``progressive``: the recipe as shipped, the same epochs;
- ``fixed-same-time``: fixed-size training for as many epochs as fit in the progressive run's wall time.

**Goal: progressive reaches fixed's test accuracy within 0.2 pp in at most two thirds of its wall time.** The
results give ``speedup`` = fixed wall time / progressive wall time and the paired test-accuracy differences over
seeds with a 95% t-interval. Then each recipe (``--recipes``) trains the model once for the same epochs, against
``fast-proxy``. Every choice is on the validation split; the test set is read once per run, at the end, and
reported as test accuracy (at the deployment resolution, and at the recipe's FixRes test resolution where it
has one). Results are written after every run, and a rerun of the same command skips the runs already there.

    python benchmarks/progressive.py                      # Fashion-MNIST, mobilenet_v2 at 32 px, 3 seeds
    python benchmarks/progressive.py --data digits --train-samples 300 --epochs 4 --seeds 1 --recipes fast-proxy
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import time
from datetime import datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "progressive.json"
PROGRESSIVE = "efficientnetv2-progressive"
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--arch", default="mobilenet_v2", help="preset name or architecture file")
    parser.add_argument("--resolution", type=int, default=32, help="deployment resolution")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-samples", type=int, default=5000, help="stratified training subset")
    parser.add_argument("--validation-samples", type=int, default=2000, help="stratified validation subset")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the other core stays free)")
    parser.add_argument("--recipes", default="fast-proxy,efficientnet,convnext,rsb-a3",
                        help="recipes trained once each beside the progressive comparison")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def run(options: argparse.Namespace, name: str, recipe_name: str, seed: int, epochs: int, fixed: bool) -> dict:
    """Train the model once and score it on the test set: one record."""
    import torch

    from nasscale.evaluate.data import load_splits, load_test_set
    from nasscale.evaluate.recipes import load_recipe, settings_for
    from nasscale.evaluate.training import evaluate_model, train_model
    from nasscale.models.build import build
    from nasscale.presets.registry import resolve_arch
    from nasscale.spec.cost import cost

    train, validation = load_splits(options.data, split_seed=0, max_train_samples=options.train_samples,
                                    max_validation_samples=options.validation_samples)
    arch = resolve_arch(options.arch).replace(in_channels=train.in_channels, num_classes=train.num_classes,
                                              resolution=options.resolution)
    settings = settings_for(load_recipe(recipe_name), arch, epochs=epochs, batch_size=options.batch_size,
                            resolution=options.resolution, seed=seed, threads=options.threads)
    if fixed:
        settings = fixed_size(settings)
    if settings.dropout is not None:
        arch = arch.replace(dropout=settings.dropout)
    if settings.drop_path_rate is not None:
        arch = arch.replace(drop_path_rate=settings.drop_path_rate)
    torch.manual_seed(seed)
    model = build(arch)
    result = train_model(model, train, validation, settings)
    test = load_test_set(options.data, split_seed=0)
    deployed = result.deployed if result.deployed is not None else model
    test_accuracy, _ = evaluate_model(deployed, test, settings)
    record = {"name": name, "recipe": recipe_name, "seed": seed, "epochs": epochs,
              "validation_accuracy": result.validation_accuracy, "test_accuracy": test_accuracy,
              "wall_seconds": result.train_seconds, "train_images_per_second": result.train_images_per_second,
              "macs": cost(arch).macs, "train_sizes": [item.train_size for item in result.history]}
    if result.test_resolution_model is not None and settings.test_resolution is not None:
        record["test_resolution"] = settings.test_resolution
        record["test_accuracy_at_test_resolution"] = evaluate_model(
            result.test_resolution_model, test, settings, resolution=settings.test_resolution)[0]
    return record


def fixed_size(settings):
    """The progressive recipe at one size: every epoch at the deployment resolution, with the regularization
    the ramp ends at."""
    progressive = settings.progressive
    return dataclasses.replace(settings, progressive=None, magnitude=progressive.magnitude[1],
                               mixup=progressive.mixup[1], dropout=progressive.dropout[1])


def interval(differences: list[float]) -> dict:
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return {"mean": mean, "half_width_95": None, "n": len(differences)}
    half = T_95[len(differences) - 1] * statistics.stdev(differences) / math.sqrt(len(differences))
    return {"mean": mean, "half_width_95": half, "n": len(differences)}


def summarize(runs: list[dict]) -> dict:
    def find(name: str, seed: int) -> dict | None:
        return next((item for item in runs if item["name"] == name and item["seed"] == seed), None)

    seeds = sorted({item["seed"] for item in runs if item["name"] == "progressive" and find("fixed", item["seed"])})
    if not seeds:
        return {}
    pairs = [(find("fixed", seed), find("progressive", seed)) for seed in seeds]
    speedups = [fixed["wall_seconds"] / progressive["wall_seconds"] for fixed, progressive in pairs]
    difference = interval([100 * (progressive["test_accuracy"] - fixed["test_accuracy"])
                           for fixed, progressive in pairs])
    summary = {"seeds": seeds, "speedup": statistics.fmean(speedups), "speedups": speedups,
               "test_accuracy_difference_pp": difference,
               "fixed_test_accuracy": statistics.fmean(fixed["test_accuracy"] for fixed, _ in pairs),
               "progressive_test_accuracy": statistics.fmean(progressive["test_accuracy"] for _, progressive in pairs),
               "goal": "progressive test accuracy >= fixed - 0.2 pp in <= 2/3 of fixed's wall time (speedup >= 1.5)"}
    lower = difference["mean"] - (difference["half_width_95"] or 0)
    summary["goal_met"] = summary["speedup"] >= 1.5 and difference["mean"] >= -0.2
    summary["goal_met_with_interval"] = summary["speedup"] >= 1.5 and lower >= -0.2
    same_time = [(find("fixed-same-time", seed), find("progressive", seed)) for seed in seeds]
    same_time = [(fixed, progressive) for fixed, progressive in same_time if fixed]
    if same_time:
        summary["progressive_minus_fixed_same_time_pp"] = interval(
            [100 * (progressive["test_accuracy"] - fixed["test_accuracy"]) for fixed, progressive in same_time])
    return summary


def save(options: argparse.Namespace, runs: list[dict], started: str) -> None:
    options.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": "python benchmarks/progressive.py " + " ".join(
                    f"--{key.replace('_', '-')} {value}" for key, value in vars(options).items() if key != "out"),
                "started": started, "machine": platform.processor() or platform.machine(),
                "data": options.data, "arch": options.arch, "resolution": options.resolution,
                "train_samples": options.train_samples, "validation_samples": options.validation_samples,
                "epochs": options.epochs, "threads": options.threads, "runs": runs,
                "summary": summarize(runs)}
    document["speedup"] = document["summary"].get("speedup")
    partial = options.out.with_suffix(".partial")
    partial.write_text(json.dumps(document, indent=2))
    partial.replace(options.out)


def main() -> None:
    options = parse_arguments()
    previous = json.loads(options.out.read_text()) if options.out.exists() else {}
    same = all(previous.get(key) == getattr(options, key)
               for key in ("data", "arch", "resolution", "train_samples", "validation_samples", "epochs"))
    runs: list[dict] = previous.get("runs", []) if same else []
    started = previous.get("started") if same and previous else datetime.now().isoformat(timespec="seconds")

    def done(name: str, seed: int) -> dict | None:
        return next((item for item in runs if item["name"] == name and item["seed"] == seed), None)

    def one(name: str, recipe: str, seed: int, epochs: int, fixed: bool) -> dict:
        existing = done(name, seed)
        if existing:
            return existing
        began = time.perf_counter()
        print(f"{name} (recipe {recipe}, seed {seed}, {epochs} epochs) ...", flush=True)
        record = run(options, name, recipe, seed, epochs, fixed)
        runs.append(record)
        save(options, runs, started)
        print(f"  test accuracy {record['test_accuracy']:.4f}, {record['wall_seconds']:.0f} s "
              f"({time.perf_counter() - began:.0f} s with data and test)", flush=True)
        return record

    for seed in range(options.seeds):
        fixed = one("fixed", PROGRESSIVE, seed, options.epochs, True)
        progressive = one("progressive", PROGRESSIVE, seed, options.epochs, False)
        seconds_per_epoch = fixed["wall_seconds"] / options.epochs
        matched = max(1, round(progressive["wall_seconds"] / seconds_per_epoch))
        one("fixed-same-time", PROGRESSIVE, seed, matched, True)
    for recipe in [name for name in options.recipes.split(",") if name]:
        one(f"recipe:{recipe}", recipe, 0, options.epochs, False)
    save(options, runs, started)
    print(json.dumps(summarize(runs), indent=2))


if __name__ == "__main__":
    main()
