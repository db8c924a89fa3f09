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
Last, the training throughput at each stage's size against the deployment size (``throughput_by_size``): the
saving progressive learning can make on this machine, whatever the accuracy.

    python benchmarks/progressive.py                      # Fashion-MNIST, mobilenet_v2 at 32 px, 3 seeds
    python benchmarks/progressive.py --recipe benchmarks/recipes/progressive-plain.yaml --recipes "" \\
        --out benchmarks/results/progressive_plain.json    # image size alone, on the fast proxy's SGD
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
    parser.add_argument("--recipe", default=PROGRESSIVE, help="the progressive recipe compared (name or YAML file)")
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


def throughput_by_size(options: argparse.Namespace) -> list[dict]:
    """Training images per second at each progressive stage's size, against the deployment size, measured in
    this run: why progressive learning saves what it saves here (the fastest of 3 rounds of 10 SGD steps)."""
    import torch

    from nasscale.evaluate.recipes import load_recipe, settings_for
    from nasscale.models.build import build
    from nasscale.presets.registry import resolve_arch
    from nasscale.spec.cost import cost

    torch.set_num_threads(options.threads)
    arch = resolve_arch(options.arch).replace(in_channels=1, num_classes=10, resolution=options.resolution)
    settings = settings_for(load_recipe(options.recipe), arch, epochs=options.epochs, resolution=options.resolution)
    progressive = settings.progressive
    sizes = sorted({progressive.size_at(stage, options.resolution) for stage in range(progressive.stages)})
    rows = []
    for size in sizes:
        sized = arch.replace(resolution=size)
        torch.manual_seed(0)
        model = build(sized).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        images = torch.rand(options.batch_size, 1, size, size)
        labels = torch.randint(0, 10, (options.batch_size,))
        rounds = []
        for round_index in range(4):  # the first round warms the allocator and oneDNN's kernels up
            began = time.perf_counter()
            for _ in range(10):
                loss = torch.nn.functional.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if round_index:
                rounds.append(10 * options.batch_size / (time.perf_counter() - began))
        rows.append({"size": size, "macs": cost(sized).macs, "images_per_second": max(rounds)})
    full = rows[-1]["images_per_second"]
    for row in rows:
        row["speed_relative_to_deployment_size"] = row["images_per_second"] / full
        row["macs_relative_to_deployment_size"] = row["macs"] / rows[-1]["macs"]
    return rows


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


def save(options: argparse.Namespace, runs: list[dict], started: str, throughput: list[dict] | None = None) -> None:
    options.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": "python benchmarks/progressive.py " + " ".join(
                    f"--{key.replace('_', '-')} {value}" for key, value in vars(options).items() if key != "out"),
                "started": started, "machine": platform.processor() or platform.machine(),
                "data": options.data, "recipe": options.recipe, "arch": options.arch, "resolution": options.resolution,
                "train_samples": options.train_samples, "validation_samples": options.validation_samples,
                "epochs": options.epochs, "threads": options.threads, "runs": runs,
                "summary": summarize(runs)}
    document["speedup"] = document["summary"].get("speedup")
    if throughput is not None:
        document["throughput_by_size"] = throughput
    partial = options.out.with_suffix(".partial")
    partial.write_text(json.dumps(document, indent=2))
    partial.replace(options.out)


def main() -> None:
    options = parse_arguments()
    previous = json.loads(options.out.read_text()) if options.out.exists() else {}
    recorded = {"recipe": PROGRESSIVE} | previous  # files written before --recipe existed compared that one
    same = all(recorded.get(key) == getattr(options, key)
               for key in ("data", "recipe", "arch", "resolution", "train_samples", "validation_samples", "epochs"))
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
        fixed = one("fixed", options.recipe, seed, options.epochs, True)
        progressive = one("progressive", options.recipe, seed, options.epochs, False)
        seconds_per_epoch = fixed["wall_seconds"] / options.epochs
        matched = max(1, round(progressive["wall_seconds"] / seconds_per_epoch))
        one("fixed-same-time", options.recipe, seed, matched, True)
    for recipe in [name for name in options.recipes.split(",") if name]:
        one(f"recipe:{recipe}", recipe, 0, options.epochs, False)
    throughput = throughput_by_size(options)
    save(options, runs, started, throughput)
    print(json.dumps({"summary": summarize(runs), "throughput_by_size": throughput}, indent=2))


if __name__ == "__main__":
    main()
