"""benchmarks/outcome.py (issue 18) in miniature: the search, the scaler, the single-dimension ablation, a baseline
fitted to each budget and every model trained, on digits with tiny budgets, one epoch, two trials' compute and one
seed; then a second call continues from the results file without training anything again. Also the library's
budget fitting (nasscale.scale.fitting) it relies on, analytically."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from nasscale.errors import ScalingError, SpecError
from nasscale.presets.registry import resolve_arch
from nasscale.scale.fitting import DIMENSIONS, fit_to_budget
from nasscale.spec.cost import cost

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def outcome():
    """The benchmark script as a module (benchmarks/ is no package; spawned workers import it by this name)."""
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("outcome", BENCHMARKS / "outcome.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["outcome"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("outcome", None)
    sys.path.remove(str(BENCHMARKS))


def mobilenet_at(resolution):
    return resolve_arch("mobilenet_v2").replace(in_channels=1, num_classes=10, resolution=resolution)


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_fit_to_budget_lands_near_the_target_along_its_dimension_only(dimension):
    # At 224 px one pixel moves the MACs a few percent; near 32 px a stride-32 network's MACs jump 2.4x between 32
    # and 33 px (every feature map one pixel larger), so resolution alone lands no closer than that there.
    base = mobilenet_at(224)
    target = 2 * cost(base).macs
    fitted = fit_to_budget(base, target, dimension=dimension)
    assert fitted.macs == cost(fitted.arch).macs and fitted.target_macs == target
    assert abs(fitted.deviation) < 0.1
    layers = [stage.num_blocks for stage in fitted.arch.stages]
    channels = [stage.out_channels for stage in fitted.arch.stages]
    same_layers = layers == [stage.num_blocks for stage in base.stages]
    same_channels = channels == [stage.out_channels for stage in base.stages]
    assert same_layers == (dimension != "depth")
    assert same_channels == (dimension not in ("width", "width+resolution"))
    assert (fitted.arch.resolution == base.resolution) == (dimension in ("depth", "width"))


def test_fit_to_budget_shrinks_by_width_above_its_resolution_floor():
    base = mobilenet_at(28)
    fitted = fit_to_budget(base, cost(base).macs // 2, dimension="width+resolution", min_resolution=28,
                           tolerance=0.05)
    assert fitted.arch.resolution == 28 and fitted.width < 1
    with pytest.raises(ScalingError, match="within 1%"):
        fit_to_budget(base, 10 * cost(base).macs, dimension="depth", tolerance=0.01, max_multiplier=1.5)
    with pytest.raises(SpecError, match="dimension"):
        fit_to_budget(base, 10, dimension="colour")


def test_budget_fitting_loads_without_torch():
    import subprocess

    code = "import sys, nasscale.scale.fitting; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def tiny_plan(outcome):
    return outcome.Plan(data="digits", resolution=32, space="tiny", budget=1_000_000, factors=(1, 2),
                        baselines=("mobilenet_v3_small",), search_trials=2, search_epochs=2, search_train_samples=200,
                        scale_candidates=1, epochs=1, train_samples=200, validation_samples=100, seeds=1,
                        latency_repeats=2)


def test_a_miniature_run_records_every_model_and_resumes_without_training(outcome, tmp_path, monkeypatch):
    plan = tiny_plan(outcome)
    out = tmp_path / "outcome.json"
    storage = f"sqlite:///{tmp_path / 'outcome.db'}"
    lines: list[str] = []
    document = outcome.run_benchmark(plan, out=out, storage=storage, jobs=1, log=lines.append)

    saved = json.loads(out.read_text())
    assert saved["plan"] == plan.record() and saved["models"] == json.loads(json.dumps(document["models"]))
    expected = {spec.key(0) for spec in outcome.model_specs(plan)}
    assert {record["key"] for record in saved["models"]} == expected  # B: searched, random, 1 baseline; 2B: 5
    assert len(expected) == 3 + 5
    for record in saved["models"]:
        assert 0 <= record["test_accuracy"] <= 1 and 0 <= record["validation_accuracy"] <= 1
        assert record["macs"] > 0 and record["params"] > 0 and record["train_seconds"] > 0
        assert set(record["latency_ms"]) == {"batch_1", "batch_32"}
        assert record["provenance"]["arch"] and record["budget_macs"] == plan.budget * record["factor"]
        if record["family"] in ("searched", "random-search") and record["factor"] == 1:
            assert record["macs"] <= plan.budget  # chosen within the budget
    baseline = next(record for record in saved["models"] if record["family"] == "hand-designed"
                    and record["factor"] == 2)
    assert abs(baseline["macs"] / (2 * plan.budget) - 1) <= outcome.BASELINE_TOLERANCE
    searches = saved["searches"]
    assert set(searches) == {"tpe", "random"}
    assert searches["random"]["epochs_spent"] == 2 * 2 and searches["tpe"]["epochs_spent"] >= 4
    assert saved["scaling"]["coefficients"] and saved["scaling"]["evaluated"]
    assert any("search tpe" in line for line in lines) and any("2B searched compound" in line for line in lines)

    summary = saved["summary"]
    assert [budget["factor"] for budget in summary["budgets"]] == [1, 2]
    first = summary["budgets"][0]["models"][0]
    assert {"test_mean_pp", "test_std_pp", "params", "macs", "latency_batch_1_ms", "latency_batch_32_ms",
            "train_seconds"} <= set(first)
    goals = summary["goals"]
    assert set(goals) == {"searched_beats_hand_designed", "compound_beats_single_dimension", "search_beats_random"}
    assert all(isinstance(goal["met"], bool) for goal in goals.values())
    dimensions = [item["dimension"] for item in goals["compound_beats_single_dimension"]["budgets"][0]["comparisons"]]
    assert dimensions == ["depth", "width", "resolution"]
    section = outcome.render_section(saved)
    assert section.count("\n| ") == 1 + 8 and "Goal 1" in section and "Goal 3" in section  # header, 8 rows

    def no_training(*arguments):
        raise AssertionError("a finished model was trained again")

    for name in ("train_task", "search_task", "scaling_task"):
        monkeypatch.setattr(outcome, name, no_training)
    again = outcome.run_benchmark(plan, out=out, storage=storage, jobs=1, log=lines.append)
    assert again["models"] == saved["models"]

    with pytest.raises(SystemExit, match="another plan"):
        outcome.run_benchmark(outcome.Plan(**{**vars(plan), "epochs": 2}), out=out, storage=storage, jobs=1)
