"""The search end to end on the tiny space: CLI, budgets, resume after a kill, results, export, train."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from nasscale.errors import SpecError
from nasscale.search.config import SearchConfig, load_config_file, make_config
from nasscale.search.objective import budget_violation, mnas_reward
from nasscale.search.record import ATTR_INFEASIBLE, ATTR_TRAINED
from nasscale.spec.cost import Cost
from tests.cli.test_cli_foundation import run_cli

FAST = ["--space", "tiny", "--data", "digits", "--epochs", "1", "--proxy-resolution", "16", "--batch-size", "128"]


def storage_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def load(tmp_path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_url(tmp_path))


def evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [trial for trial in study.trials if trial.user_attrs.get(ATTR_TRAINED) and trial.state.is_finished()]


# ----------------------------------------------------------------------------------------------- pure parts


def test_budget_violation_names_the_budget():
    config = SearchConfig(max_macs=1000, max_params=50)
    assert budget_violation(Cost(params=10, macs=900), config) is None
    assert budget_violation(Cost(params=10, macs=2000), config) == "MACs 2.00K > budget 1.00K"
    assert budget_violation(Cost(params=60, macs=900), config) == "params 60 > budget 50"


def test_mnas_reward_is_accuracy_times_cost_ratio_power():
    assert mnas_reward(0.8, 400_000_000, 400_000_000, -0.07) == pytest.approx(0.8)
    assert mnas_reward(0.8, 800_000_000, 400_000_000, -0.07) == pytest.approx(0.8 * 2 ** -0.07)


def test_config_file_then_flags(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("space: tiny\ntrials: 5\nmax-macs: 2M\nobjectives: accuracy,macs,params\n")
    config = make_config(load_config_file(str(path)), {"trials": 7, "space": None}, source=str(path))
    assert (config.space, config.trials, config.max_macs) == ("tiny", 7, 2_000_000)
    assert config.objectives == ("accuracy", "macs", "params") and config.directions[2] == "minimize"
    assert config.study_name == "tiny-digits"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spaec: tiny\n", "study.yaml: spaec: unknown key; valid keys are space, data,"),
        ("objectives: accuracy,energy\n", "study.yaml: objectives: unknown objective 'energy'"),
        ("sampler: cmaes\n", "study.yaml: sampler: must be one of nsga2, tpe, random, evolution, local, gp, got"),
        ("reward: mnas\n", "study.yaml: target_macs: is required with --reward mnas"),
        ("max_macs: lots\n", "study.yaml: max_macs: must be a count such as 400M"),
        ("trials: 0\n", "study.yaml: trials: must be a positive integer, got 0"),
    ],
)
def test_config_errors_are_one_line(tmp_path, text, expected):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        make_config(load_config_file(str(path)), source="study.yaml")
    assert str(error.value).startswith(expected) and "\n" not in str(error.value)


def test_committed_study_configs_are_valid():
    from pathlib import Path

    for path in sorted(Path(__file__).parent.parent.parent.joinpath("studies").glob("*.yaml")):
        make_config(load_config_file(str(path)), source=str(path))


# ------------------------------------------------------------------------------------------- end to end


def test_search_best_export_train(capsys, tmp_path):
    storage = storage_url(tmp_path)
    code, out, err = run_cli(capsys, "search", *FAST, "--trials", "3", "--storage", storage, "--study", "e2e",
                             "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["study"] == "e2e" and result["objectives"] == ["accuracy", "macs"]
    assert result["best"] and all(0.0 <= row["val_accuracy"] <= 1.0 for row in result["best"])
    study = load(tmp_path, "e2e")
    trials = evaluated(study)
    assert len(trials) == 3
    first = trials[0]
    for key in ("arch", "arch_id", "summary", "macs", "params", "accuracy", "history", "seed", "timings"):
        assert key in first.user_attrs
    assert first.values == [first.user_attrs["accuracy"], first.user_attrs["macs"]]

    code, out, _ = run_cli(capsys, "best", "--study", "e2e", "--storage", storage, "--json")
    assert code == 0 and {row["trial"] for row in json.loads(out)} <= {trial.number for trial in trials}

    best_number = json.loads(out)[0]["trial"]
    code, out, _ = run_cli(capsys, "export", "--study", "e2e", "--trial", str(best_number), "--out",
                           str(tmp_path / "best"), "--storage", storage)
    assert code == 0 and (tmp_path / "best" / "arch.yaml").is_file()
    code, out, _ = run_cli(capsys, "cost", str(tmp_path / "best" / "arch.yaml"), "--json")
    assert json.loads(out)["macs"] == study.trials[best_number].user_attrs["macs"]

    code, out, err = run_cli(capsys, "train", "--arch", str(tmp_path / "best" / "arch.yaml"), "--data", "digits",
                             "--epochs", "1", "--resolution", "16", "--out", str(tmp_path / "model"), "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0
    _check_saved_model(tmp_path / "model")


def _check_saved_model(folder):
    import numpy
    import onnx
    import torch

    from nasscale.evaluate.final import load_weights
    from nasscale.spec.serialization import load_arch_file

    arch = load_arch_file(str(folder / "arch.yaml"))
    model = load_weights(arch, folder / "weights.pt")
    onnx.checker.check_model(str(folder / "model.onnx"))
    images = torch.rand(1, arch.in_channels, 16, 16)
    with torch.no_grad():
        expected = model(images).numpy()
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    actual = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    numpy.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4)


def test_rerunning_the_same_command_resumes(capsys, tmp_path):
    args = ["search", *FAST, "--storage", storage_url(tmp_path), "--study", "resume", "--sampler", "random"]
    assert run_cli(capsys, *args, "--trials", "2")[0] == 0
    first = [(trial.number, trial.values) for trial in evaluated(load(tmp_path, "resume"))]
    assert run_cli(capsys, *args, "--trials", "4")[0] == 0
    study = load(tmp_path, "resume")
    trials = evaluated(study)
    assert len(trials) == 4
    assert [(trial.number, trial.values) for trial in trials[:2]] == first
    # A resumed run draws fresh proposals instead of replaying the first run's.
    assert len({trial.user_attrs["arch_id"] for trial in trials}) == 4
    code, out, _ = run_cli(capsys, *args, "--trials", "4")  # already done: nothing to run
    assert code == 0 and len(evaluated(load(tmp_path, "resume"))) == 4


def test_same_seed_gives_the_same_architectures(capsys, tmp_path):
    sequences = []
    for name in ("first", "second"):
        run_cli(capsys, "search", *FAST, "--trials", "3", "--storage", storage_url(tmp_path), "--study", name,
                "--sampler", "random", "--seed", "5")
        sequences.append([trial.user_attrs["arch_id"] for trial in load(tmp_path, name).trials])
    assert sequences[0] == sequences[1]


def test_over_budget_samples_are_never_trained(capsys, tmp_path):
    from nasscale.space.extent import mac_range
    from nasscale.space.parsing import load_space

    smallest, largest = mac_range(load_space("tiny"), in_channels=1, num_classes=10)
    budget = smallest + (largest - smallest) // 5
    code, _, err = run_cli(capsys, "search", *FAST, "--trials", "3", "--storage", storage_url(tmp_path),
                           "--study", "budget", "--sampler", "random", "--max-macs", str(budget))
    assert code == 0, err
    study = load(tmp_path, "budget")
    infeasible = [trial for trial in study.trials if ATTR_INFEASIBLE in trial.user_attrs]
    assert infeasible, "the budget should reject some of tiny's samples"
    assert all(trial.state is optuna.trial.TrialState.PRUNED for trial in infeasible)
    assert all(not trial.user_attrs.get(ATTR_TRAINED) and "accuracy" not in trial.user_attrs for trial in infeasible)
    assert all(trial.user_attrs["macs"] > budget for trial in infeasible)
    assert len(evaluated(study)) == 3 and all(trial.user_attrs["macs"] <= budget for trial in evaluated(study))


def test_mnas_reward_search_is_single_objective(capsys, tmp_path):
    code, out, err = run_cli(capsys, "search", *FAST, "--trials", "2", "--storage", storage_url(tmp_path),
                             "--study", "reward", "--reward", "mnas", "--target-macs", "1M", "--json")
    assert code == 0, err
    study = load(tmp_path, "reward")
    trial = evaluated(study)[0]
    expected = mnas_reward(trial.user_attrs["accuracy"], trial.user_attrs["macs"], 1_000_000, -0.07)
    assert len(study.directions) == 1 and trial.value == pytest.approx(expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["search", "--space", "nope"], "nasscale: error: unknown search space 'nope'"),
        (["search", "--space", "tiny", "--data", "fashion-mnist:/nonexistent"], "nasscale: error: fashion-mnist"),
        (["search", "--space", "tiny", "--max-macs", "1K"], "nasscale: error: --max-macs 1.00K is below"),
        (["search", "--config", "studies/none.yaml"], "nasscale: error: studies/none.yaml: no such study config"),
        (["best", "--study", "missing"], "nasscale: error: study 'missing' not found in"),
        (["search", "--space", "tiny", "--device", "gpu"], "nasscale: error: device: must be cpu, cuda or cuda:N"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, args, expected):
    storage = ["--storage", storage_url(tmp_path)]
    code, _, err = run_cli(capsys, *args, *storage)
    assert code == 2
    assert err.startswith(expected), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_killed_search_resumes_without_losing_trials(tmp_path):
    """SIGKILL a search mid-study, run the same command again: finished trials stay, the count goes on."""
    command = [sys.executable, "-m", "nasscale.cli", "search", *FAST, "--epochs", "2", "--trials", "6",
               "--storage", storage_url(tmp_path), "--study", "killed", "--sampler", "random"]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    finished_before = []
    while time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            finished_before = [trial for trial in load(tmp_path, "killed").trials
                               if trial.state is optuna.trial.TrialState.COMPLETE]
        except KeyError:
            continue
        if len(finished_before) >= 2:
            break
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    assert len(finished_before) >= 2
    survived = {trial.number: trial.values for trial in load(tmp_path, "killed").trials
                if trial.state is optuna.trial.TrialState.COMPLETE}
    assert all(survived[trial.number] == trial.values for trial in finished_before)

    rerun = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    study = load(tmp_path, "killed")
    complete = {trial.number: trial.values for trial in study.trials if trial.state is optuna.trial.TrialState.COMPLETE}
    assert all(complete[number] == values for number, values in survived.items())
    assert len(evaluated(study)) >= 6
    assert max(complete) > max(survived)  # numbering continued after the killed run's trials


def test_spaces_and_sample_json_feed_cost(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "spaces", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0 and {"mnas", "efficientnetv2", "convnext", "tiny"} <= set(rows)
    assert rows["tiny"]["size"] == 2048 and rows["mnas"]["macs_min"] < rows["mnas"]["macs_max"]
    code, out, _ = run_cli(capsys, "sample", "--space", "mnas", "-n", "3", "--seed", "4", "--json")
    items = json.loads(out)
    assert code == 0 and len(items) == 3
    again = json.loads(run_cli(capsys, "sample", "--space", "mnas", "-n", "3", "--seed", "4", "--json")[1])
    assert [item["arch_id"] for item in items] == [item["arch_id"] for item in again]
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(items[0]))
    code, out, _ = run_cli(capsys, "cost", str(path), "--json")
    assert code == 0 and json.loads(out)["macs"] == items[0]["macs"]


def test_ctrl_c_stops_cleanly_and_keeps_finished_trials(tmp_path):
    command = [sys.executable, "-m", "nasscale.cli", "search", *FAST, "--epochs", "2", "--trials", "50",
               "--storage", storage_url(tmp_path), "--study", "interrupted", "--sampler", "random"]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    complete = []
    while time.monotonic() < deadline and len(complete) < 2:
        time.sleep(0.5)
        try:
            complete = [trial.number for trial in load(tmp_path, "interrupted").trials
                        if trial.state is optuna.trial.TrialState.COMPLETE]
        except KeyError:
            continue
    worker.send_signal(signal.SIGINT)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 130
    assert "interrupted; finished trials are kept" in err and "Traceback" not in err
    kept = {trial.number for trial in load(tmp_path, "interrupted").trials
            if trial.state is optuna.trial.TrialState.COMPLETE}
    assert set(complete) <= kept
