"""``nasscale scale`` end to end: B0 ladders against the library and EfficientNet's releases, the dry-run grid,
files that ``nasscale cost`` reads, EfficientNetV2 non-uniform scaling under a cap, one-line errors, and an
evaluated grid on a tiny search study with the ladder recorded in its storage. Also the latency helper."""

import contextlib
import io
import json
import time

import optuna
import pytest
import torch
from torch import nn

from nasscale.cli.app import main
from nasscale.errors import SpecError
from nasscale.evaluate.latency import measure_latency
from nasscale.presets.efficientnet import efficientnet_b0
from nasscale.scale.ladder import scale_ladder
from nasscale.scale.pipeline import parse_phis
from nasscale.scale.solver import EFFICIENTNET_COMPOUND, solve_coefficients
from nasscale.search.record import LADDER_ATTR, LADDER_META_ATTR
from nasscale.spec.cost import cost
from nasscale.spec.serialization import from_dict
from tests.cli.test_cli_foundation import run_cli

B0_MACS = 385_814_752
SEARCH = ["search", "--space", "tiny", "--data", "digits", "--trials", "2", "--epochs", "1", "--proxy-resolution", "16"]


def scale_json(capsys, *args) -> dict:
    code, out, err = run_cli(capsys, "scale", *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A two-trial search on the tiny space: (storage URL, study name)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('study') / 'study.db'}"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main([*SEARCH, "--storage", storage, "--study", "s", "--json"])
    return storage, "s"


# ----------------------------------------------------------------------------------------------- B0 ladders


def test_b0_ladder_lands_within_2_percent_of_each_doubling(capsys):
    result = scale_json(capsys, "--base", "efficientnet_b0", "--phi", "1..7")
    steps = result["steps"]
    assert [step["phi"] for step in steps] == list(range(1, 8))
    assert result["coefficients"] == list(EFFICIENTNET_COMPOUND) and result["coefficients_source"] == "efficientnet"
    for step in steps:
        assert abs(step["macs"] / (B0_MACS * 2 ** step["phi"]) - 1) <= 0.02
        assert step["released_name"] == f"efficientnet_b{step['phi']}"  # the released ladder side by side
        assert step["released_deviation"] < -0.10  # B1-B7 undershoot 2^phi by 11-41%
    assert result["base"]["macs"] == B0_MACS and result["solver"] is None


def test_raw_compound_rule_is_the_library_ladder(capsys):
    result = scale_json(capsys, "--base", "efficientnet_b0", "--phi", "1..7", "--coefficients", "1.2,1.1,1.15",
                        "--no-budget-exact")
    raw = scale_ladder(efficientnet_b0(), range(1, 8), coefficients=(1.2, 1.1, 1.15), budget_exact=False)
    assert [(step["resolution"], step["macs"], step["params"], step["stage_layers"]) for step in result["steps"]] \
        == [(step.resolution, step.macs, step.params, list(step.stage_layers)) for step in raw]
    assert {step["method"] for step in result["steps"]} == {"compound"}
    assert result["steps"][0]["deviation"] > 0.25  # B1 by the raw rule overshoots 2x by 29%
    code, out, _ = run_cli(capsys, "scale", "--base", "efficientnet_b0", "--phi", "1..2", "--coefficients",
                           "1.2,1.1,1.15", "--no-budget-exact")
    assert code == 0 and "raw compound rule ladder" in out and "B1 @240" in out


def test_dry_run_lists_the_feasible_grid_quickly(capsys, tmp_path):
    grid = solve_coefficients(efficientnet_b0())
    started = time.perf_counter()
    code, out, _ = run_cli(capsys, "scale", "--base", "efficientnet_b0", "--phi", "1..7", "--dry-run")
    seconds = time.perf_counter() - started
    assert code == 0 and seconds < 5  # about half a second; nothing is built or trained
    assert f"Solver grid: {len(grid.feasible())} of {len(grid.rows)} candidates" in out
    assert "(analytic, dry run)" in out
    result = scale_json(capsys, "--base", "efficientnet_b0", "--phi", "1..7", "--dry-run")
    listed = [(row["alpha"], row["beta"], row["gamma"]) for row in result["solver"]["feasible_rows"]]
    assert listed == [row.coefficients for row in grid.ranked()]
    assert result["dry_run"] and all(step["accuracy"] is None for step in result["steps"])


def test_out_writes_files_that_cost_accepts(capsys, tmp_path):
    out = tmp_path / "ladder"
    result = scale_json(capsys, "--base", "efficientnet_b0", "--phi", "1..3", "--solve", "--out", str(out))
    assert sorted(path.name for path in out.iterdir()) == ["grid.csv", "ladder.json", "phi1.yaml", "phi2.yaml",
                                                           "phi3.yaml"]
    assert json.loads((out / "ladder.json").read_text())["steps"] == result["steps"]
    assert len((out / "grid.csv").read_text().splitlines()) == 1 + result["solver"]["candidates"]
    assert result["coefficients_source"] == "solved"
    for step in result["steps"]:
        code, text, err = run_cli(capsys, "cost", str(out / f"phi{step['phi']}.yaml"), "--json")
        assert code == 0, err
        assert (json.loads(text)["macs"], json.loads(text)["params"]) == (step["macs"], step["params"])


def test_non_uniform_efficientnetv2_honours_the_resolution_cap(capsys):
    result = scale_json(capsys, "--base", "efficientnetv2_s", "--non-uniform", "--phi", "1..2",
                        "--max-resolution", "400")
    for step in result["steps"]:
        assert 384 <= step["resolution"] <= 400
        assert abs(step["deviation"]) <= 0.02 and step["method"] == "non-uniform" and step["profile"]
        assert cost(from_dict(step["arch"])).macs == step["macs"]
    assert result["coefficients"] is None and len(result["solver"]["allocations"]) == 2


def test_record_study_with_a_preset_base(capsys, tmp_path):
    storage = f"sqlite:///{tmp_path / 'scaled.db'}"
    scale_json(capsys, "--base", "efficientnet_b0", "--phi", "1..2", "--record-study", "b0-ladder", "--storage",
               storage)
    study = optuna.load_study(study_name="b0-ladder", storage=storage)
    rows = study.user_attrs[LADDER_ATTR]
    assert [row["phi"] for row in rows] == [1, 2] and rows[0]["released_macs"] == 686_802_832
    assert study.user_attrs[LADDER_META_ATTR]["base"]["name"] == "efficientnet_b0"


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--phi", "11"], "--phi: must be in 0..10"),
        (["--phi", "3..1"], "--phi: range '3..1' is empty"),
        (["--coefficients", "1.2,0.9,1.15"], "--coefficients: beta must be at least 1"),
        (["--phi", "1", "--macs", "1M"], "phi=1: no width/resolution lands within 2% of 1.00M MACs"),
        (["--phi", "1..2", "--macs", "1G"], "--macs: is the target of a single phi"),
        (["--solve", "--coefficients", "1.2,1.1,1.15"], "--solve: solves the coefficients"),
        (["--dry-run", "--latency"], "--dry-run: is analytic only and writes nothing; drop --latency"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    code, out, err = run_cli(capsys, "scale", "--base", "efficientnet_b0", *args)
    assert code == 2 and out == ""
    assert err.startswith(f"nasscale: error: {expected}") and err.count("\n") == 1


def test_nothing_is_written_when_the_budget_is_impossible(capsys, tmp_path):
    out, database = tmp_path / "out", tmp_path / "record.db"
    code, _, err = run_cli(capsys, "scale", "--base", "efficientnet_b0", "--phi", "1", "--macs", "1M", "--out",
                           str(out), "--record-study", "x", "--storage", f"sqlite:///{database}")
    assert code == 2 and "no width/resolution lands" in err
    assert not out.exists() and not database.exists()


def test_missing_study_and_trial_are_one_line(capsys, tiny_study, tmp_path):
    storage, name = tiny_study
    for args, expected in (
        (["--study", "nope", "--storage", storage], "study 'nope' not found"),
        (["--study", name, "--storage", storage, "--trial", "9"], f"study '{name}' has no trial 9"),
        (["--study", name, "--storage", f"sqlite:///{tmp_path / 'typo.db'}"], "storage 'sqlite:///"),
    ):
        code, _, err = run_cli(capsys, "scale", *args)
        assert code == 2 and err.startswith(f"nasscale: error: {expected}") and err.count("\n") == 1
    assert not (tmp_path / "typo.db").exists()


def test_parse_phis():
    assert parse_phis("3") == (3,) and parse_phis("0..2") == (0, 1, 2)
    with pytest.raises(SpecError, match="integer or a range"):
        parse_phis("1-7")


# ------------------------------------------------------------------------------------------ evaluated grid


def test_study_baseline_evaluated_grid_recorded_in_the_storage(capsys, tiny_study):
    storage, name = tiny_study
    study = optuna.load_study(study_name=name, storage=storage)
    best = max((trial for trial in study.trials if trial.state.name == "COMPLETE"),
               key=lambda trial: trial.user_attrs["accuracy"])
    started = time.perf_counter()
    # A 10% band gives the tiny base several distinct feasible candidates (5% leaves one).
    result = scale_json(capsys, "--study", name, "--storage", storage, "--phi", "2", "--epochs", "1",
                        "--proxy-resolution", "16", "--max-candidates", "2", "--tolerance", "0.1", "--latency",
                        "--latency-repeats", "2")
    print(f"evaluated grid and ladder: {time.perf_counter() - started:.1f} s")
    assert result["base"]["trial"] == best.number and result["base"]["accuracy"] == best.user_attrs["accuracy"]
    evaluated = result["solver"]["evaluated"]
    assert len(evaluated) == 2 and all(0 <= row["accuracy"] <= 1 for row in evaluated)
    winner = max(evaluated, key=lambda row: row["accuracy"])
    assert result["coefficients"] == [winner["alpha"], winner["beta"], winner["gamma"]]
    assert result["coefficients_source"] == "solved by proxy accuracy"
    (step,) = result["steps"]
    assert 0 <= step["accuracy"] <= 1 and step["proxy_resolution"] >= 16
    latency = step["latency"]
    assert latency["median_ms"] > 0 and latency["p10_ms"] > 0 and latency["p90_ms"] >= latency["p10_ms"]
    assert latency["repeats"] == 2 and latency["threads"] == 1

    recorded = optuna.load_study(study_name=name, storage=storage).user_attrs
    assert recorded[LADDER_ATTR] == result["steps"]
    assert from_dict(recorded[LADDER_ATTR][0]["arch"]).arch_id == step["arch_id"]
    assert recorded[LADDER_META_ATTR]["solver"]["evaluated"] == evaluated
    assert result["recorded"] == {"storage": storage, "study": name, "user_attrs": [LADDER_ATTR, LADDER_META_ATTR]}


# ---------------------------------------------------------------------------------------------- latency


def test_measure_latency_reports_positive_percentiles_and_restores_state():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    threads = torch.get_num_threads()
    latency = measure_latency(model, torch.zeros(1, 1, 16, 16), repeats=3, warmup=1, threads=1)
    assert set(latency) == {"median_ms", "min_ms", "p10_ms", "p90_ms", "repeats", "threads"}
    assert 0 < latency["min_ms"] <= latency["p10_ms"] <= latency["median_ms"] <= latency["p90_ms"]
    assert (latency["repeats"], latency["threads"]) == (3, 1)
    assert model.training and torch.get_num_threads() == threads
    with pytest.raises(SpecError, match="repeats"):
        measure_latency(model, torch.zeros(1, 1, 16, 16), repeats=0)
