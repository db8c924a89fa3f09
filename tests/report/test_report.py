"""The report: pure Pareto and report data, and the HTML page for real and edge-case studies."""

import json
import math

import optuna
import pandas
import pytest
from plotly.offline import get_plotlyjs

from nasscale.cli.app import main
from nasscale.report.data import (
    ChoiceEffect,
    LadderPoint,
    best_so_far,
    choice_effects,
    efficientnet_reference,
    hypervolume_by_evaluation,
    ladder_base_macs,
    ladder_points,
    pareto_split,
    reference_cost,
    study_counts,
)
from nasscale.report.page import write_report
from nasscale.search.config import SearchConfig
from nasscale.search.objective import architecture_attributes
from nasscale.search.record import LADDER_ATTR, STUDY_ATTR_CONFIG, STUDY_ATTR_OBJECTIVES
from tests.cli.test_cli_foundation import run_cli

FAST = ["--space", "tiny", "--data", "digits", "--epochs", "1", "--proxy-resolution", "16", "--batch-size", "128"]


def row(trial, accuracy=None, macs=None, *, state="complete", params=None, value=None, infeasible=False,
        latency_ms=None, arch=None, note="", repeat=False):
    return {"trial": trial, "state": state, "val_accuracy": accuracy, "macs": macs, "params": params, "value": value,
            "arch_id": None, "summary": None, "train_seconds": None, "note": note, "latency_ms": latency_ms,
            "infeasible": infeasible, "arch": arch, "repeat": repeat, "evaluated": not (infeasible or repeat)}


# ---------------------------------------------------------------------------------------------- synthetic study


def synthetic_study(storage: str, name: str = "synthetic", *, trials: int = 24, max_macs: int = 1_500_000,
                    ladder: bool = True, seed: int = 0, objectives: tuple[str, ...] = ("accuracy", "macs")
                    ) -> optuna.Study:
    """A study shaped like a real search (architectures sampled from the tiny space, analytic costs, the same
    attributes) with made-up accuracies and latencies, an over-budget trial or two, one failure and a ladder:
    every part of the page, in a second and without training. Built in memory, then copied: SQLite commits
    per attribute would make it slow."""
    from nasscale.space.parsing import load_space
    from nasscale.space.sampling import OptunaChooser, sample
    from nasscale.spec.cost import cost

    space = load_space("tiny")
    config = SearchConfig(space="tiny", study=name, storage=storage, trials=trials, epochs=1, max_macs=max_macs,
                          seed=seed, objectives=objectives, sampler="tpe" if len(objectives) == 1 else "nsga2")
    memory = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name=name, storage=memory, directions=config.directions,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    study.set_user_attr(STUDY_ATTR_CONFIG, config.to_dict())
    study.set_user_attr(STUDY_ATTR_OBJECTIVES, config.objective_names)

    def objective(trial):
        arch = sample(space, OptunaChooser(trial), in_channels=1, num_classes=10)
        arch_cost = cost(arch)
        for key, value in architecture_attributes(arch, arch_cost).items():
            trial.set_user_attr(key, value)
        if arch_cost.macs > max_macs:
            trial.set_user_attr("infeasible", f"MACs {arch_cost.macs} > budget {max_macs}")
            raise optuna.TrialPruned()
        trial.set_user_attr("trained", True)
        if trial.number == 3:
            trial.set_user_attr("fail_reason", "TrainingDiverged: loss is nan")
            raise RuntimeError("diverged")
        accuracy = 0.55 + 0.08 * math.log10(arch_cost.macs / 50_000) + 0.01 * (trial.number % 3)
        if trial.number == 5 and len(objectives) == 1:
            raise optuna.TrialPruned("below the median")  # the median pruner, single-objective only
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("latency_ms", 0.2 + arch_cost.macs / 2e6)
        return accuracy if len(objectives) == 1 else (accuracy, arch_cost.macs)

    study.optimize(objective, n_trials=trials, catch=(RuntimeError,))
    if ladder:
        study.set_user_attr(LADDER_ATTR, [
            {"phi": phi, "macs": int(200_000 * 2**phi * (1 + 0.02 * phi)), "params": 9_000 * (phi + 1),
             "accuracy": None if phi == 3 else 0.8 + 0.03 * phi, "deviation": 0.02 * phi} for phi in range(4)])
    optuna.copy_study(from_study_name=name, from_storage=memory, to_storage=storage)
    return optuna.load_study(study_name=name, storage=storage)


# ------------------------------------------------------------------------------------------------- pure data


def test_pareto_split_front_dominated_and_untrained():
    rows = [row(0, 0.80, 100), row(1, 0.70, 200), row(2, 0.90, 300), row(3, 0.85, 300), row(4, 0.60, 50),
            row(5, None, 900, state="pruned", infeasible=True, note="MACs > budget"),
            row(6, None, 120, state="fail", note="diverged"), row(7, None, None, state="running")]
    split = pareto_split(rows, "macs")
    assert [item["trial"] for item in split.front] == [4, 0, 2]  # cheapest first
    assert sorted(item["trial"] for item in split.dominated) == [1, 3]
    assert [item["trial"] for item in split.untrained] == [5, 6]
    assert pareto_split([], "macs").front == ()


def test_pareto_split_against_a_cost_some_trials_lack():
    rows = [row(0, 0.8, 100, latency_ms=2.0), row(1, 0.9, 200, latency_ms=1.0), row(2, 0.95, 300)]
    split = pareto_split(rows, "latency_ms")
    assert [item["trial"] for item in split.front] == [1]
    assert [item["trial"] for item in split.dominated] == [0]


def test_hypervolume_grows_with_the_front_and_is_a_fraction_of_the_box():
    rows = [row(0, 0.5, 50), row(1, 0.4, 80), row(2, 0.8, 50), row(3, 0.9, 100)]
    reference = reference_cost([rows])
    assert reference == pytest.approx(110.0)
    volumes = hypervolume_by_evaluation(rows, reference)
    assert len(volumes) == 4
    assert volumes[0] == pytest.approx(0.5 * 60 / 110)
    assert volumes[1] == volumes[0]  # a dominated trial adds nothing
    assert volumes[2] == pytest.approx(0.8 * 60 / 110)
    assert volumes[3] == pytest.approx((0.8 * 50 + 0.9 * 10) / 110)
    assert all(0 <= volume <= 1 for volume in volumes)
    assert hypervolume_by_evaluation([row(0, state="fail")], 10.0) == (0.0,)  # evaluated, no result
    # Repeats and over-budget samples are no evaluations: the axis skips them.
    skipped = [row(0, 0.5, 50), row(1, 0.9, 50, state="pruned", repeat=True), row(2, infeasible=True, state="pruned"),
               row(3, 0.8, 50)]
    assert hypervolume_by_evaluation(skipped, reference) == pytest.approx((0.5 * 60 / 110, 0.8 * 60 / 110))
    assert reference_cost([[row(0, state="fail", macs=5)]]) is None


def test_best_so_far_follows_the_direction_and_skips_incomplete_trials():
    rows = [row(0, value=0.5), row(1, value=0.7), row(2, state="pruned"), row(3, value=0.6), row(4, value=0.9)]
    assert best_so_far(rows) == ((0, 0.5), (1, 0.7), (3, 0.7), (4, 0.9))
    assert best_so_far(rows, maximize=False) == ((0, 0.5), (1, 0.5), (3, 0.5), (4, 0.5))
    assert best_so_far([]) == ()


def test_study_counts():
    rows = [row(0, 0.8, 1), row(1, state="pruned", infeasible=True), row(2, state="pruned"), row(3, state="fail"),
            row(4, state="running"), row(5, state="pruned", repeat=True),
            row(6, state="pruned") | {"stopped_early": True}]
    assert study_counts(rows) == {"trials": 7, "trained": 1, "over_budget": 1, "pruned": 1, "failed": 1,
                                  "running": 1, "repeat": 1, "stopped_early": 1}


def stage(block="mbconv", kernel_size=3, expand_ratio=3.0, num_blocks=1, out_channels=16):
    return {"block": block, "kernel_size": kernel_size, "expand_ratio": expand_ratio, "num_blocks": num_blocks,
            "out_channels": out_channels, "stride": 1}


def test_choice_effects_keep_only_choices_that_varied():
    arch_a = {"resolution": 32, "stem_channels": 8, "head_channels": 64, "stages": [stage(kernel_size=3)]}
    arch_b = {"resolution": 32, "stem_channels": 16, "head_channels": 64, "stages": [stage(kernel_size=5)]}
    rows = [row(0, 0.7, 1, arch=arch_a), row(1, 0.8, 1, arch=arch_b), row(2, 0.9, 1, arch=arch_b),
            row(3, None, 1, state="fail", arch=arch_a)]
    effects = choice_effects(rows)
    assert effects == [ChoiceEffect("stem width", "network", (("8", (0.7,)), ("16", (0.8, 0.9)))),
                       ChoiceEffect("kernel", "stage 0", (("3", (0.7,)), ("5", (0.8, 0.9))))]
    assert choice_effects([row(0, 0.7, 1, arch=arch_a)]) == []


def test_ladder_points_parse_leniently_and_compare_with_efficientnet():
    raw = [{"phi": 1, "macs": 210, "params": 20, "accuracy": None, "deviation": 0.05},
           {"phi": 0, "macs": 100, "params": 10, "accuracy": 0.8, "deviation": 0.0}, {"macs": 5}, "junk"]
    points = ladder_points(raw)
    assert points == (LadderPoint(0, 100, 10, 0.8, 0.0, None), LadderPoint(1, 210, 20, None, 0.05, None))
    assert points[1].target_macs == pytest.approx(200)
    assert ladder_base_macs(points) == 100
    reference = dict(efficientnet_reference(points))
    assert reference[0] == 100 and set(reference) == set(range(8))
    assert reference[7] == pytest.approx(100 * 37_745_884_192 / 385_814_752, rel=1e-6)  # B7 / B0 MACs
    recorded = ladder_points([{"phi": 1, "macs": 700, "released_macs": 686_802_832}])
    assert efficientnet_reference(recorded) == ((1, 686_802_832.0),)
    assert ladder_points(None) == () and ladder_points({"phi": 1}) == ()


# ------------------------------------------------------------------------------------------------------ pages


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real search on the tiny space: 3 trained trials under a MAC budget that rejects some samples."""
    folder = tmp_path_factory.mktemp("searched")
    storage = f"sqlite:///{folder / 'study.db'}"
    try:
        main(["search", *FAST, "--trials", "3", "--max-macs", "600K", "--storage", storage, "--study", "dev",
              "--json"])
    except SystemExit as exit_request:
        assert exit_request.code in (0, None)
    return storage


def test_report_for_a_real_search(capsys, tmp_path, searched):
    out, csv = tmp_path / "report.html", tmp_path / "trials.csv"
    code, stdout, _ = run_cli(capsys, "report", "--study", "dev", "--storage", searched, "--out", str(out), "--csv",
                              str(csv), "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["path"] == str(out) and summary["studies"][0]["trained"] == 3
    page = out.read_text()
    assert page.count(get_plotlyjs()[:300]) == 1 and "Plotly.newPlot" in page  # embedded once: opens offline
    assert "<script src=" not in page
    for text in ("Validation accuracy against MACs", "Validation accuracy against parameters", "Hypervolume",
                 "Top architectures",
                 "How the choices matter", "TPE over accuracy and macs on space tiny", "stage 1: ",
                 "at the deployment resolution 32 px, scored on the validation split (0.1 of the training data"):
        assert text in page, text
    table = pandas.read_csv(csv)
    assert list(table.columns[:3]) == ["study", "trial", "state"] and (table["state"] == "complete").sum() == 3


def test_report_compares_studies_with_latency_ladder_failures(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    synthetic_study(storage, "first")
    synthetic_study(storage, "second", seed=1, ladder=False)
    out = write_report(["first", "second"], storage, tmp_path / "both.html", csv_path=tmp_path / "both.csv")
    page = out.read_text()
    for text in ("Validation accuracy against latency (ms)", "Scaling ladder", "EfficientNet B0-B7 (published)",
                 "over budget (not trained)", "TrainingDiverged: loss is nan", "first: Pareto front",
                 "second: Pareto front", "Study first", "Study second", "Parameter importances",
                 "recorded before the evaluation protocol",  # these synthetic studies record no splits
                 "NSGA-II (2 studies): mean, band lowest to highest"):  # two seeds of one sampler: one band
        assert text in page, text
    assert set(pandas.read_csv(tmp_path / "both.csv")["study"]) == {"first", "second"}


def test_empty_all_failed_and_single_trial_studies_get_a_page_that_says_so(tmp_path):
    storage = f"sqlite:///{tmp_path / 'edge.db'}"
    optuna.create_study(study_name="empty", storage=storage, directions=["maximize", "minimize"])
    failed = optuna.create_study(study_name="failed", storage=storage, directions=["maximize", "minimize"])

    def out_of_memory(trial):
        trial.set_user_attr("fail_reason", "RuntimeError: out of memory")
        raise RuntimeError("out of memory")

    failed.optimize(out_of_memory, n_trials=2, catch=(RuntimeError,))
    synthetic_study(storage, "one", trials=1, max_macs=10**9, ladder=False)

    page = write_report(["empty"], storage, tmp_path / "empty.html").read_text()
    assert "holds no trials yet" in page and "No trained trial in any study yet" in page
    assert "Plotly.newPlot" not in page

    page = write_report(["failed"], storage, tmp_path / "failed.html").read_text()
    assert "None of the 2 trials of study &#x27;failed&#x27; finished training" in page
    assert "Trials without an accuracy" in page

    page = write_report(["one"], storage, tmp_path / "one.html").read_text()
    assert "Validation accuracy against MACs" in page and "Plotly.newPlot" in page
    assert "need at least 2 completed trials" in page


def test_single_objective_study_shows_best_so_far(tmp_path):
    storage = f"sqlite:///{tmp_path / 'single.db'}"
    synthetic_study(storage, "single", trials=8, objectives=("accuracy",), ladder=False)
    page = write_report(["single"], storage, tmp_path / "single.html").read_text()
    for text in ("Best accuracy so far", "TPE over accuracy", "pruned (not trained)", "best trials by objective value",
                 "Parameter importances for accuracy"):
        assert text in page, text
    assert "Hypervolume" not in page


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--study", "nope"], "nasscale: error: study 'nope' not found in sqlite:///"),
        (["--study", "dev", "--storage", "sqlite:///missing-folder/none.db"],
         "nasscale: error: storage 'sqlite:///missing-folder/none.db': no such file"),
    ],
)
def test_missing_study_or_storage_is_one_line_and_exit_2(capsys, tmp_path, searched, args, expected):
    full = ["report", "--storage", searched, "--out", str(tmp_path / "r.html"), *args]
    code, _, err = run_cli(capsys, *full)
    assert code == 2 and err.startswith(expected) and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()
