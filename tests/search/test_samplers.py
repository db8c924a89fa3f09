"""The contract every sampler keeps (as Optuna's own sampler tests check theirs): it stays in the space and within
the budgets, repeats itself under a seed, resumes from storage as if never stopped, and shares a study between
two workers. Run for real on a benchmark table, so a search of 16 trials takes a second or two."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nasscale.evaluate.benchmark_build import build_table, plan_build
from nasscale.evaluate.benchmark_table import BuildRequest, load_table
from nasscale.search.config import SAMPLER_NAMES
from nasscale.search.evolution import rank_and_crowding
from nasscale.search.record import ATTR_ARCH_ID, ATTR_INFEASIBLE, ATTR_MACS
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
    request = BuildRequest(space=str(space), data="digits", out=folder / "contract.bench", epochs=1,
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
    assert all(ATTR_INFEASIBLE in trial.user_attrs for trial in study.trials if not is_evaluated(trial))


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
