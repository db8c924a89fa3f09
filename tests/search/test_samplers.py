"""The contract every sampler keeps (as Optuna's own sampler tests check theirs): it stays in the space and within
the budgets, repeats itself under a seed, resumes from storage as if never stopped, shares a study between two
workers, and never evaluates an architecture twice; and MO-ASHA on the same searches. Run for real on a benchmark
table, so a search of 16 trials takes a second or two."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nasscale.evaluate.benchmark_build import build_table, plan_build
from nasscale.evaluate.benchmark_table import BuildRequest, load_table
from nasscale.search.config import SAMPLER_NAMES
from nasscale.search.early_stopping import is_promoted, rung_values
from nasscale.search.evolution import rank_and_crowding
from nasscale.search.record import (
    ATTR_ARCH_ID,
    ATTR_DUPLICATE_OF,
    ATTR_EPOCHS_TRAINED,
    ATTR_INFEASIBLE,
    ATTR_MACS,
    ATTR_RUNGS,
    ATTR_TRAINED,
)
from nasscale.search.storage import make_storage
from nasscale.search.trials import is_evaluated
from tests.cli.test_cli_foundation import run_cli

# 2 x 2 x 2 x 2 x 2 = 32 architectures.
SPACE = """\
name: contract
resolution: 16
stem: conv
stem_channels: [4, 8]
head: conv
head_channels: [16, 32]
activation: relu
dropout: 0.0
stages:
  - block: conv
    num_blocks: [1, 2]
    out_channels: [8, 16]
    stride: 2
    kernel_size: [3, 5]
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("samplers")
    space = folder / "contract.yaml"
    space.write_text(SPACE)
    request = BuildRequest(space=str(space), data="digits", out=folder / "contract.bench", epochs=3,
                           max_train_samples=200, max_validation_samples=100, proxies=False)
    build_table(request, plan_build(request))
    return space, request.out


def search(capsys, table, storage: str, *extra: str) -> None:
    space, bench = table
    code, _, err = run_cli(capsys, "search", "--space", str(space), "--data", "digits", "--evaluator",
                           f"bench:{bench}", "--epochs", "1", "--storage", storage, "--study", "s", *extra)
    assert code == 0, err


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=make_storage(storage))


def decisions(storage: str) -> list[tuple]:
    study = load(storage)
    return [(trial.number, tuple(sorted(trial.params.items())), trial.state.name) for trial in study.trials]


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_a_sampler_stays_within_the_budget_and_repeats_itself(capsys, tmp_path, table, sampler):
    macs = sorted(row.macs for row in load_table(table[1]).rows.values())
    budget = macs[len(macs) * 3 // 4]
    runs = []
    for copy in ("first", "second"):
        storage = f"journal:{tmp_path / f'{copy}.journal'}"
        search(capsys, table, storage, "--sampler", sampler, "--trials", "16", "--seed", "3", "--max-macs",
               str(budget))
        runs.append(decisions(storage))
    assert runs[0] == runs[1]  # the same seed, the same decisions, trial by trial
    study = load(storage)
    trained = [trial for trial in study.trials if is_evaluated(trial)]
    assert len(trained) == 16 and all(trial.user_attrs[ATTR_MACS] <= budget for trial in trained)
    assert all(trial.user_attrs[ATTR_ARCH_ID] in load_table(table[1]).rows for trial in trained)  # in the space
    assert all(ATTR_INFEASIBLE in trial.user_attrs or ATTR_DUPLICATE_OF in trial.user_attrs
               for trial in study.trials if not is_evaluated(trial))


@pytest.mark.parametrize("sampler", ["evolution", "local", "nsga2"])
def test_a_resumed_search_decides_as_one_that_never_stopped(capsys, tmp_path, table, sampler):
    straight, resumed = f"journal:{tmp_path / 'straight.journal'}", f"journal:{tmp_path / 'resumed.journal'}"
    search(capsys, table, straight, "--sampler", sampler, "--trials", "14")
    search(capsys, table, resumed, "--sampler", sampler, "--trials", "7")
    search(capsys, table, resumed, "--sampler", sampler, "--trials", "14")
    assert decisions(straight) == decisions(resumed)


@pytest.mark.parametrize("sampler", ["evolution", "local"])
def test_two_workers_share_a_study(tmp_path, table, sampler):
    space, bench = table
    storage = f"journal:{tmp_path / 'shared.journal'}"
    command = [sys.executable, "-m", "nasscale.cli", "search", "--space", str(space), "--data", "digits",
               "--evaluator", f"bench:{bench}", "--epochs", "1", "--storage", storage, "--study", "s", "--sampler",
               sampler, "--trials", "12"]
    workers = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    study = load(storage)
    assert sum(is_evaluated(trial) for trial in study.trials) == 12


def test_evolution_breeds_from_the_best_ranked_and_changes_one_decision(capsys, tmp_path, table):
    storage = f"journal:{tmp_path / 'evolution.journal'}"
    search(capsys, table, storage, "--sampler", "evolution", "--trials", "20")
    study = load(storage)
    trials = study.trials
    later = trials[8:]  # after the population of 8 filled
    differences = []
    for child in later:
        earlier = [trial for trial in trials[:child.number] if trial.state.name == "COMPLETE"]
        changed = min(sum(child.params.get(key) != value for key, value in parent.params.items())
                      for parent in earlier)
        differences.append(changed)
    assert all(changed <= 1 for changed in differences)  # every child is one decision from an earlier trial


def test_rank_and_crowding_follow_nsga2(tmp_path):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for accuracy, macs in ((0.9, 10), (0.8, 5), (0.7, 20), (0.95, 30), (0.6, 1)):
        study.add_trial(optuna.trial.create_trial(values=[accuracy, macs]))
    ranks = rank_and_crowding(study.trials, study.directions)
    assert {number for number, (rank, _) in ranks.items() if rank == 0} == {0, 1, 3, 4}
    assert ranks[2][0] == 1  # dominated by (0.9, 10)
    assert ranks[4][1] == ranks[3][1] == -float("inf")  # the front's ends are kept first


# ------------------------------------------------------------------------------------------- no duplicates


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_no_sampler_evaluates_an_architecture_twice(capsys, tmp_path, table, sampler):
    storage = f"journal:{tmp_path / 'unique.journal'}"
    search(capsys, table, storage, "--sampler", sampler, "--trials", "24", "--seed", "1")  # 24 of the 32
    trials = load(storage).trials
    evaluated = [trial for trial in trials if is_evaluated(trial)]
    ids = [trial.user_attrs[ATTR_ARCH_ID] for trial in evaluated]
    assert len(evaluated) == 24 and len(set(ids)) == 24
    for repeat in (trial for trial in trials if ATTR_DUPLICATE_OF in trial.user_attrs):
        original = trials[repeat.user_attrs[ATTR_DUPLICATE_OF]]
        assert original.user_attrs[ATTR_ARCH_ID] == repeat.user_attrs[ATTR_ARCH_ID] and is_evaluated(original)
        assert repeat.state.name == "PRUNED" and ATTR_TRAINED not in repeat.user_attrs


def test_the_search_reports_the_duplicates_it_avoided(capsys, tmp_path, table):
    space, bench = table
    storage = f"journal:{tmp_path / 'counted.journal'}"
    code, out, err = run_cli(capsys, "search", "--space", str(space), "--data", "digits", "--evaluator",
                             f"bench:{bench}", "--epochs", "1", "--storage", storage, "--study", "s", "--sampler",
                             "random", "--trials", "30", "--json")
    assert code == 0, err
    counts = json.loads(out)["counts"]
    repeats = sum(ATTR_DUPLICATE_OF in trial.user_attrs for trial in load(storage).trials)
    assert repeats > 0  # 30 random draws of 32 architectures repeat some
    assert counts["duplicates_avoided"] == repeats and counts["evaluated"] == 30


def test_a_study_larger_than_its_space_is_refused_before_it_starts(capsys, tmp_path, table):
    space, bench = table
    storage = f"journal:{tmp_path / 'large.journal'}"
    code, _, err = run_cli(capsys, "search", "--space", str(space), "--data", "digits", "--evaluator",
                           f"bench:{bench}", "--epochs", "1", "--storage", storage, "--study", "s", "--trials", "40")
    assert code == 2
    assert "holds 32 distinct architectures, fewer than --trials 40" in err and "Traceback" not in err
    assert not (tmp_path / "large.journal").exists() or not load(storage).trials


def test_a_space_used_up_within_the_budget_stops_with_an_error(capsys, tmp_path, table, monkeypatch):
    from nasscale.search.backends import optuna_backend

    monkeypatch.setattr(optuna_backend, "MAX_CONSECUTIVE_DUPLICATES", 30)
    macs = sorted(row.macs for row in load_table(table[1]).rows.values())
    storage = f"journal:{tmp_path / 'used-up.journal'}"
    space, bench = table
    code, _, err = run_cli(capsys, "search", "--space", str(space), "--data", "digits", "--evaluator",
                           f"bench:{bench}", "--epochs", "1", "--storage", storage, "--study", "s", "--sampler",
                           "random", "--trials", "10", "--max-macs", str(macs[3]))  # 4 architectures fit
    assert code == 2 and "30 samples in a row repeated architectures the study has evaluated" in err
    evaluated = [trial for trial in load(storage).trials if is_evaluated(trial)]
    assert len(evaluated) == sum(value <= macs[3] for value in macs)  # every one that fits, each once


# ------------------------------------------------------------------------------------------------- MO-ASHA


def mo_asha(capsys, table, storage: str, trials: int) -> None:
    space, bench = table
    code, _, err = run_cli(capsys, "search", "--space", str(space), "--data", "digits", "--evaluator",
                           f"bench:{bench}", "--epochs", "3", "--storage", storage, "--study", "s", "--sampler",
                           "local", "--trials", str(trials), "--pruner", "mo-asha", "--min-epochs", "1",
                           "--reduction-factor", "3")
    assert code == 0, err


def test_mo_asha_stops_trials_at_their_rung_by_the_studys_record(capsys, tmp_path, table):
    storage = f"journal:{tmp_path / 'asha.journal'}"
    mo_asha(capsys, table, storage, 20)
    study = load(storage)
    evaluated = [trial for trial in study.trials if is_evaluated(trial)]
    stopped = [trial for trial in evaluated if trial.state.name == "PRUNED"]
    assert len(evaluated) == 20 and 0 < len(stopped) < 20
    for trial in evaluated:
        rungs = trial.user_attrs[ATTR_RUNGS]
        if trial.state.name == "PRUNED":  # stopped at its last rung, having trained that far
            last = max(rungs, key=int)
            assert not rungs[last]["promoted"] and trial.user_attrs[ATTR_EPOCHS_TRAINED] == int(last)
        else:
            assert all(record["promoted"] for record in rungs.values()) and set(rungs) == {"1"}
            assert trial.user_attrs[ATTR_EPOCHS_TRAINED] == 3
        # One worker: each decision follows from the rung records of the trials before it.
        for epoch, record in rungs.items():
            earlier = [rung_values(other, int(epoch)) for other in evaluated if other.number < trial.number]
            assert is_promoted(record["values"], [values for values in earlier if values is not None],
                               study.directions, 3) is record["promoted"]


def test_a_resumed_mo_asha_search_decides_as_one_that_never_stopped(capsys, tmp_path, table):
    straight, resumed = f"journal:{tmp_path / 'straight.journal'}", f"journal:{tmp_path / 'resumed.journal'}"
    mo_asha(capsys, table, straight, 16)
    mo_asha(capsys, table, resumed, 8)
    mo_asha(capsys, table, resumed, 16)
    assert decisions(straight) == decisions(resumed)


def test_a_mo_asha_study_resumes_only_with_its_rungs(capsys, tmp_path, table):
    space, bench = table
    storage = f"journal:{tmp_path / 'rungs.journal'}"
    mo_asha(capsys, table, storage, 4)
    for extra in (("--pruner", "none"), ("--pruner", "mo-asha", "--reduction-factor", "2")):
        code, _, err = run_cli(capsys, "search", "--space", str(space), "--data", "digits", "--evaluator",
                               f"bench:{bench}", "--epochs", "3", "--storage", storage, "--study", "s", "--sampler",
                               "local", "--trials", "8", *extra)
        assert code == 2 and "its MO-ASHA rungs would not compare" in err and "Traceback" not in err
    assert sum(is_evaluated(trial) for trial in load(storage).trials) == 4  # the study untouched


def test_two_workers_share_mo_asha_rungs_and_never_train_one_architecture_twice(tmp_path, table):
    space, bench = table
    storage = f"journal:{tmp_path / 'shared-asha.journal'}"
    command = [sys.executable, "-m", "nasscale.cli", "search", "--space", str(space), "--data", "digits",
               "--evaluator", f"bench:{bench}", "--epochs", "3", "--storage", storage, "--study", "s", "--sampler",
               "random", "--trials", "20", "--pruner", "mo-asha"]
    workers = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    trials = load(storage).trials
    evaluated = [trial for trial in trials if is_evaluated(trial)]
    assert len(evaluated) == 20 and len({trial.user_attrs[ATTR_ARCH_ID] for trial in evaluated}) == 20
    for trial in evaluated:  # every trial reached rung 1 and was ranked there against the shared record
        assert "1" in trial.user_attrs[ATTR_RUNGS]
        assert (trial.state.name == "PRUNED") is (not trial.user_attrs[ATTR_RUNGS]["1"]["promoted"])
