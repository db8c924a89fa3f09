"""Hardware-aware search: latency as an objective, a budget and MnasNet's reward (from a latency table or measured),
and zero-cost proxies as the evaluator or as a prefilter of what to train. All on the tiny space with digits.

No assertion here depends on a timing being fast except one loose bound; which samples break a latency budget is
made deterministic by a table with made-up timings for the same parts.
"""

import hashlib
import json
import math
from dataclasses import replace

import optuna
import pytest

from nasscale.errors import SpecError
from nasscale.evaluate.latency_calibration import build_latency_table
from nasscale.evaluate.latency_table import predict_latency
from nasscale.search.config import make_config, parse_milliseconds
from nasscale.search.objective import SearchContext, assess, mnas_reward, prepare_context, proxy_score
from nasscale.search.record import ATTR_HISTORY, ATTR_INFEASIBLE, ATTR_TRAINED, LATENCY_FROM_TABLE, LATENCY_MEASURED
from nasscale.space.parsing import load_space
from nasscale.space.sampling import OptunaChooser, RandomChooser, sample
from nasscale.spec.serialization import from_dict
from tests.cli.test_cli_foundation import run_cli
from tests.search.test_search import evaluated, load, storage_url

FAST = ["--space", "tiny", "--data", "digits", "--epochs", "1", "--proxy-resolution", "16", "--batch-size", "128",
        "--max-train-samples", "600"]
DIGITS_SHAPE = {"in_channels": 1, "num_classes": 10}


@pytest.fixture(scope="module")
def tiny_table():
    return build_latency_table(load_space("tiny"), **DIGITS_SHAPE, repeats=3, warmup=1, calibration=2)


@pytest.fixture(scope="module")
def table_file(tiny_table, tmp_path_factory):
    path = tmp_path_factory.mktemp("tables") / "tiny.json"
    tiny_table.save(path)
    return path


@pytest.fixture(scope="module")
def steady_table(tiny_table, tmp_path_factory):
    """The same parts with made-up, fixed timings (0.01-0.11 ms from a hash of the key): which architectures break
    a budget no longer depends on how busy the machine was while the table was built."""
    entries = {key: 0.01 + int(hashlib.sha256(key.encode()).hexdigest()[:6], 16) / 16**6 / 10
               for key in tiny_table.entries}
    table = replace(tiny_table, entries=entries, interaction_factor=1.0, overhead_ms=0.01)
    path = tmp_path_factory.mktemp("tables") / "steady.json"
    table.save(path)
    return table, path


def search(capsys, tmp_path, study: str, *args: str) -> optuna.Study:
    code, _, err = run_cli(capsys, "search", *FAST, "--storage", storage_url(tmp_path), "--study", study, "--json",
                           *args)
    assert code == 0, err
    return load(tmp_path, study)


def sampled_archs(seed: int, count: int) -> list:
    """The architectures trials 0..count-1 of a random-sampler search with ``seed`` propose: each trial's sampler is
    seeded with seed + trial number, whatever the history (optuna_backend.TrialSeededSampler)."""
    from nasscale.search.samplers import TrialSeededSampler

    config = make_config({"space": "tiny", "sampler": "random", "seed": seed})
    study = optuna.create_study(sampler=TrialSeededSampler(config), directions=["maximize", "minimize"])
    archs = []
    for _ in range(count):
        trial = study.ask()
        archs.append(sample(load_space("tiny"), OptunaChooser(trial), **DIGITS_SHAPE))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return archs


# ------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("text", "milliseconds"), [("15ms", 15.0), ("15", 15.0), (2.5, 2.5), ("0.5s", 500.0),
                                                     ("800us", 0.8), (" 1.5 MS ", 1.5)])
def test_latency_budgets_parse_as_milliseconds(text, milliseconds):
    assert parse_milliseconds(text) == pytest.approx(milliseconds)


def test_objective_names_say_what_is_optimised():
    assert make_config({"objectives": "accuracy,latency"}).objective_names == ["accuracy", "latency"]
    assert make_config({"objectives": "accuracy,latency"}).directions == ["maximize", "minimize"]
    reward = make_config({"reward": "mnas", "target_latency": "15ms"})
    assert reward.objective_names == ["reward_mnas_latency"] and reward.needs_latency
    assert make_config({"reward": "mnas", "target_macs": "1M"}).objective_names == ["reward_mnas"]
    zero_cost = make_config({"evaluator": "zero-cost:synflow"})
    assert zero_cost.objective_names == ["score_synflow", "macs"] and not zero_cost.needs_latency


# ------------------------------------------------------------------------------------------- latency


def test_latency_objective_and_budget_from_a_table(capsys, tmp_path, steady_table):
    """Trial 0's sample is over the budget by construction: it is pruned before anything is built, with its
    predicted latency recorded; every trained trial is within the budget by its recorded prediction."""
    table, path = steady_table
    for seed in range(40):
        predictions = [predict_latency(table, arch) for arch in sampled_archs(seed, 12)]
        budget = sorted(predictions[1:])[2]  # at least 3 of trials 1..11 fit
        if predictions[0] > budget:
            break
    study = search(capsys, tmp_path, "latency", "--objectives", "accuracy,latency", "--latency-table", str(path),
                   "--max-latency", f"{budget}ms", "--trials", "3", "--sampler", "random", "--seed", str(seed))
    assert study.user_attrs["nasscale_objectives"] == ["accuracy", "latency"]
    first = study.trials[0]
    assert first.state is optuna.trial.TrialState.PRUNED and "latency" in first.user_attrs[ATTR_INFEASIBLE]
    assert first.user_attrs["latency_ms"] == pytest.approx(predictions[0]) and "accuracy" not in first.user_attrs
    infeasible = [trial for trial in study.trials if ATTR_INFEASIBLE in trial.user_attrs]
    assert all(not trial.user_attrs.get(ATTR_TRAINED) and trial.user_attrs["latency_ms"] > budget
               for trial in infeasible)
    trained = evaluated(study)
    assert len(trained) == 3
    for trial in trained:
        attrs = trial.user_attrs
        assert attrs["latency_source"] == LATENCY_FROM_TABLE and attrs["latency_ms"] <= budget
        assert attrs["latency_ms"] == pytest.approx(predict_latency(table, from_dict(attrs["arch"])))
        assert trial.values == [attrs["accuracy"], attrs["latency_ms"]]

    code, out, _ = run_cli(capsys, "best", "--study", "latency", "--storage", storage_url(tmp_path))
    assert code == 0 and "latency ms" in out and LATENCY_FROM_TABLE in out
    code, out, _ = run_cli(capsys, "report", "--study", "latency", "--storage", storage_url(tmp_path), "--out",
                           str(tmp_path / "report.html"), "--json")
    page = (tmp_path / "report.html").read_text()
    assert code == 0 and "Validation accuracy against latency (ms)" in page and "latency &lt;= " in page


def test_measured_latency_is_recorded_and_is_the_objective(capsys, tmp_path):
    study = search(capsys, tmp_path, "measured", "--objectives", "accuracy,latency", "--trials", "2",
                   "--latency-repeats", "3", "--max-latency", "10s")
    for trial in evaluated(study):
        attrs = trial.user_attrs
        assert attrs["latency_source"] == LATENCY_MEASURED and 0 < attrs["latency_ms"] < 10_000
        assert trial.values == [attrs["accuracy"], attrs["latency_ms"]]
    code, out, _ = run_cli(capsys, "best", "--study", "measured", "--storage", storage_url(tmp_path), "--json")
    assert code == 0 and all(row["latency_source"] == LATENCY_MEASURED for row in json.loads(out))


def test_a_measured_sample_over_budget_is_rejected_untrained():
    """Without a table the model is built and timed, and an over-budget one goes no further (no data needed)."""
    space = load_space("tiny")
    config = make_config({"space": "tiny", "max_latency": "1us", "latency_repeats": 2})
    context = SearchContext(config, space, None, None, 1, 10)
    candidate = assess(sample(space, RandomChooser(0), **DIGITS_SHAPE), context)
    assert candidate.latency_source == LATENCY_MEASURED and candidate.latency_ms > 0.001
    assert candidate.violation.startswith("latency ") and "(measured) > budget 0.001 ms" in candidate.violation
    over_macs = make_config({"space": "tiny", "max_latency": "1us", "max_macs": "1K"})
    candidate = assess(sample(space, RandomChooser(0), **DIGITS_SHAPE), replace(context, config=over_macs))
    assert candidate.violation.startswith("MACs") and candidate.latency_ms is None  # never built


def test_mnas_reward_on_latency(capsys, tmp_path, table_file):
    study = search(capsys, tmp_path, "reward", "--reward", "mnas", "--target-latency", "0.3ms", "--latency-table",
                   str(table_file), "--trials", "2")
    assert len(study.directions) == 1 and study.user_attrs["nasscale_objectives"] == ["reward_mnas_latency"]
    for trial in evaluated(study):
        attrs = trial.user_attrs
        assert trial.value == pytest.approx(mnas_reward(attrs["accuracy"], attrs["latency_ms"], 0.3, -0.07))
    code, out, _ = run_cli(capsys, "best", "--study", "reward", "--storage", storage_url(tmp_path))
    assert code == 0 and "latency ms" in out


# ------------------------------------------------------------------------------------- zero-cost proxies


def test_zero_cost_evaluator_scores_without_training(capsys, tmp_path):
    study = search(capsys, tmp_path, "synflow", "--evaluator", "zero-cost:synflow", "--trials", "3")
    assert study.user_attrs["nasscale_objectives"] == ["score_synflow", "macs"]
    assert study.user_attrs["nasscale_config"]["evaluator"] == "zero-cost:synflow"
    trials = evaluated(study)
    assert len(trials) == 3
    for trial in trials:
        attrs = trial.user_attrs
        assert attrs["evaluator"] == "zero-cost:synflow" and math.isfinite(attrs["accuracy"])
        assert ATTR_HISTORY not in attrs and not trial.intermediate_values and "train_seconds" not in attrs["timings"]
        assert trial.values == [attrs["accuracy"], attrs["macs"]]
    assert sum(trial.user_attrs["timings"]["score_seconds"] for trial in trials) < 30  # seconds, not a training
    code, out, _ = run_cli(capsys, "best", "--study", "synflow", "--storage", storage_url(tmp_path))
    assert code == 0 and "score (synflow)" in out
    # The same study cannot be resumed with training: its values would mix scores and accuracies.
    code, _, err = run_cli(capsys, "search", *FAST, "--storage", storage_url(tmp_path), "--study", "synflow")
    assert code == 2 and "optimises score_synflow,macs, not accuracy,macs" in err


def test_prefilter_trains_the_best_scored_of_k_candidates(capsys, tmp_path):
    study = search(capsys, tmp_path, "prefilter", "--prefilter", "naswot:4", "--trials", "2", "--max-macs", "1M")
    config = make_config({"space": "tiny", "max_train_samples": 600, "proxy_resolution": 16,
                          "prefilter": "naswot:4"})
    context = prepare_context(config)
    for trial in evaluated(study):
        attrs = trial.user_attrs
        record = attrs["prefilter"]
        candidates = record["candidates"]
        scores = [candidate["score"] for candidate in candidates]
        assert len(candidates) == 4 and len({candidate["arch_id"] for candidate in candidates}) == 4
        assert all(score is not None for score in scores) and record["proxy"] == "naswot"
        assert all(candidate["macs"] <= 1_000_000 for candidate in candidates)
        assert record["chosen"] == scores.index(max(scores))
        assert attrs["arch_id"] == candidates[record["chosen"]]["arch_id"] == from_dict(attrs["arch"]).arch_id
        assert record["sampled_arch_id"] == candidates[0]["arch_id"] and ATTR_HISTORY in attrs  # trained
        rescored = proxy_score("naswot", from_dict(attrs["arch"]), context, seed=attrs["seed"])
        assert rescored == pytest.approx(max(scores))


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("args", "expected"), [
    (["--objectives", "accuracy,speed"], "objectives: unknown objective 'speed'; choose from accuracy, macs"),
    (["--max-latency", "fast"], "max_latency: must be a duration such as 15ms"),
    (["--max-latency", "-3ms"], "max_latency: must be a duration such as 15ms"),
    (["--target-latency", "5ms"], "target_latency: is the T of --reward mnas"),
    (["--reward", "mnas", "--target-latency", "5ms", "--target-macs", "1M"], "target_latency: cannot be combined"),
    (["--latency-table", "missing.json"], "missing.json: no such latency table"),
    (["--evaluator", "synflow"], "evaluator: must be training, zero-cost:NAME"),
    (["--evaluator", "zero-cost:magic"], "--evaluator: unknown proxy 'magic'; the proxies are synflow"),
    (["--prefilter", "naswot"], "prefilter: must be NAME:K, e.g. naswot:8"),
    (["--prefilter", "naswot:0"], "prefilter: K must be at least 1"),
    (["--prefilter", "magic:4"], "--prefilter: unknown proxy 'magic'"),
    (["--prefilter", "naswot:4", "--evaluator", "zero-cost:snip"], "prefilter: saves training runs"),
    (["--reward", "mnas", "--target-macs", "1M", "--evaluator", "zero-cost:snip"], "reward: multiplies an accuracy"),
])
def test_bad_hardware_options_are_one_line(capsys, tmp_path, args, expected):
    code, _, err = run_cli(capsys, "search", *FAST, "--storage", storage_url(tmp_path), *args)
    assert code == 2 and err.startswith(f"nasscale: error: {expected}"), err
    assert err.count("\n") == 1


def test_table_problems_fail_before_the_first_trial(capsys, tmp_path, steady_table):
    table, path = steady_table
    wrong_shape = tmp_path / "rgb.json"
    wrong_shape.write_text(json.dumps(replace(table, in_channels=3).to_dict()))
    fastest = table.overhead_ms  # below any architecture
    cases = [
        (["--latency-table", str(wrong_shape)], "built for 3 input channels and 10 classes, but data 'digits' has 1"),
        (["--latency-table", str(path), "--space", "mnas"], "lacks 1196 of the 1208 parts of space 'mnas'"),
        (["--latency-table", str(path), "--max-latency", f"{fastest}ms"], "is below the fastest architecture"),
    ]
    for args, expected in cases:
        code, _, err = run_cli(capsys, "search", *FAST, "--storage", storage_url(tmp_path), *args)
        assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "study.db").exists() or not optuna.get_all_study_summaries(storage_url(tmp_path))


def test_a_config_file_takes_latency_settings(tmp_path):
    from nasscale.search.config import load_config_file

    path = tmp_path / "study.yaml"
    path.write_text("space: tiny\nobjectives: [accuracy, latency]\nmax-latency: 2.5ms\nprefilter: naswot:8\n")
    config = make_config(load_config_file(str(path)), source=str(path))
    assert config.max_latency == 2.5 and config.prefilter_proxy == ("naswot", 8) and config.needs_latency
    path.write_text("target-latency: soon\n")
    with pytest.raises(SpecError, match="study.yaml: target_latency: must be a duration"):
        make_config(load_config_file(str(path)), source="study.yaml")
