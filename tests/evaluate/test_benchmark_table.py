"""nasscale bench: a small table built for real on digits, read back, resumed, summarised and searched."""

import json
import sqlite3
from pathlib import Path

import optuna
import pytest

from nasscale.evaluate.benchmark_build import build_table, plan_build
from nasscale.evaluate.benchmark_table import BenchmarkError, BuildRequest, load_table
from nasscale.search.record import ATTR_ACCURACY, ATTR_ARCH_ID, ATTR_TIMINGS
from nasscale.space.extent import space_size
from nasscale.space.parsing import load_space
from tests.cli.test_cli_foundation import run_cli

# 2 stem widths x 2 stage widths x 2 kernels: 8 architectures that train in a fraction of a second each.
MICRO_SPACE = """\
name: micro
resolution: 16
stem: conv
stem_channels: [4, 8]
head: conv
head_channels: 16
activation: relu
dropout: 0.0
stages:
  - block: conv
    num_blocks: 1
    out_channels: [8, 16]
    stride: 2
    kernel_size: [3, 5]
"""
EPOCHS = 2


def micro_request(folder: Path, **changes) -> BuildRequest:
    space = folder / "micro.yaml"
    space.write_text(MICRO_SPACE)
    values = {"space": str(space), "data": "digits", "out": folder / "micro.bench", "epochs": EPOCHS,
              "max_train_samples": 300, "max_validation_samples": 100, "proxies": True} | changes
    return BuildRequest(**values)


@pytest.fixture(scope="module")
def micro_table(tmp_path_factory) -> BuildRequest:
    request = micro_request(tmp_path_factory.mktemp("bench"))
    plan = plan_build(request)
    assert build_table(request, plan) == len(plan.archs) == space_size(load_space(request.space)) == 8
    return request


def test_a_built_table_holds_every_architecture_with_its_curve(micro_table):
    table = load_table(micro_table.out)
    assert table.complete and len(table.rows) == 8 and table.epochs == EPOCHS
    # digits are deployed at 32 px: the space's 16 maps there, and every cost is counted at it
    assert table.meta["resolution"] == 32 and table.meta["space_definition"]["resolution"] == 32
    assert table.meta["splits"]["validation_images"] == 100 and table.meta["recipe"]["epochs"] == EPOCHS
    for row in table.rows.values():
        assert row.arch["resolution"] == 32 and [point.epoch for point in row.curve] == [1, 2]
        assert all(0 <= point.validation_accuracy <= 1 and point.validation_loss > 0 for point in row.curve)
        assert 0 <= row.test_accuracy <= 1 and row.train_seconds > 0 and row.latency_ms > 0
        assert set(row.proxies) >= {"synflow", "naswot", "params"}
    answer = table.answer(next(iter(table.rows)), 1)
    first = next(iter(table.rows.values()))
    assert answer.validation_accuracy == first.curve[0].validation_accuracy
    assert answer.seconds == pytest.approx(first.train_seconds / 2)


def test_a_build_resumes_where_it_stopped(micro_table, tmp_path):
    copy = tmp_path / "copy.bench"
    copy.write_bytes(micro_table.out.read_bytes())
    with sqlite3.connect(copy) as connection:  # as if killed after five architectures
        victims = [arch_id for (arch_id,) in connection.execute("SELECT arch_id FROM architectures LIMIT 3")]
        connection.executemany("DELETE FROM architectures WHERE arch_id = ?", [(arch_id,) for arch_id in victims])
    request = micro_request(micro_table.out.parent, out=copy)
    plan = plan_build(request)
    assert len(plan.done) == 5 and {arch.arch_id for arch in plan.remaining} == set(victims)
    assert build_table(request, plan) == 3 and load_table(copy).complete


def test_resuming_with_another_recipe_is_refused(micro_table):
    with pytest.raises(BenchmarkError, match="another recipe"):
        plan_build(micro_request(micro_table.out.parent, epochs=3))
    with pytest.raises(BenchmarkError, match="epochs 2 in the file, 3 asked"):
        plan_build(micro_request(micro_table.out.parent, epochs=3))


def test_bench_info_reports_the_front_and_the_rank_stability(capsys, micro_table):
    code, out, err = run_cli(capsys, "bench", "info", str(micro_table.out), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["architectures"] == info["expected"] == 8
    assert 0 < info["hypervolume"] <= 1 and 1 <= len(info["pareto_front"]) <= 8
    taus = info["kendall_tau_epoch_vs_last"]
    assert len(taus) == EPOCHS and taus[-1] == pytest.approx(1)
    names = {item["name"] for item in info["correlations_with_final_validation_accuracy"]}
    assert {"synflow", "macs", "params", "test accuracy"} <= names
    code, out, _ = run_cli(capsys, "bench", "info", str(micro_table.out))
    assert code == 0 and "true Pareto front" in out and "Kendall tau" in out


def test_a_search_answered_from_the_table_records_its_numbers(capsys, micro_table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code, _, err = run_cli(capsys, "search", "--space", str(micro_table.space), "--data", "digits", "--evaluator",
                           f"bench:{micro_table.out}", "--epochs", "1", "--trials", "6", "--sampler", "random",
                           "--storage", storage, "--study", "tabular", "--json")
    assert code == 0, err
    table = load_table(micro_table.out)
    trials = [trial for trial in optuna.load_study(study_name="tabular", storage=storage).trials
              if trial.state.name == "COMPLETE"]
    assert len(trials) == 6
    for trial in trials:
        row = table.rows[trial.user_attrs[ATTR_ARCH_ID]]
        assert trial.user_attrs[ATTR_ACCURACY] == row.curve[0].validation_accuracy  # the epoch-1 answer
        assert trial.user_attrs[ATTR_TIMINGS]["train_seconds"] == pytest.approx(row.train_seconds / EPOCHS)
        assert trial.values[1] == row.macs


@pytest.mark.parametrize("change, expected", [
    (["--epochs", "5"], "learning curves of 1 to 2 epochs"),
    (["--space", "tiny"], "built for space"),
    (["--resolution", "24"], "built for space"),
])
def test_a_table_that_cannot_answer_the_search_is_one_line(capsys, micro_table, tmp_path, change, expected):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    arguments = {"--space": str(micro_table.space), "--epochs": "1"}
    arguments |= dict(zip(change[::2], change[1::2], strict=True))
    code, _, err = run_cli(capsys, "search", *[item for pair in arguments.items() for item in pair], "--data",
                           "digits", "--evaluator", f"bench:{micro_table.out}", "--trials", "2", "--storage", storage)
    assert code == 2 and expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "study.db").exists() or not optuna.get_all_study_summaries(storage) or all(
        not summary.n_trials for summary in optuna.get_all_study_summaries(storage))


def test_truncated_and_corrupted_tables_are_one_line(capsys, micro_table, tmp_path):
    truncated = tmp_path / "truncated.bench"
    truncated.write_bytes(micro_table.out.read_bytes()[:3000])
    corrupted = tmp_path / "corrupted.bench"
    corrupted.write_bytes(micro_table.out.read_bytes())
    with sqlite3.connect(corrupted) as connection:
        connection.execute("UPDATE architectures SET curve = '[[1, 0.5' WHERE rowid = 1")
    text = tmp_path / "text.bench"
    text.write_text("not a table\n")
    for path, expected in ((truncated, "rebuild it"), (corrupted, "corrupted row"), (text, "not a nasscale"),
                           (tmp_path / "missing.bench", "no such benchmark table")):
        code, _, err = run_cli(capsys, "bench", "info", str(path))
        assert code == 2 and expected in err and err.count("\n") == 1, (path, err)


def test_a_space_too_big_to_enumerate_needs_a_sample(tmp_path):
    with pytest.raises(Exception, match="--sample N"):
        plan_build(BuildRequest(space="mnas", data="digits", out=tmp_path / "mnas.bench"))


def test_two_builder_processes_write_the_same_numbers_as_one(micro_table, tmp_path):
    request = micro_request(micro_table.out.parent, out=tmp_path / "parallel.bench", workers=2, sample=4,
                            proxies=False)
    plan = plan_build(request)
    assert build_table(request, plan) == 4
    serial, parallel = load_table(micro_table.out), load_table(request.out)
    for arch_id, row in parallel.rows.items():  # training is repeatable: the process does not matter
        assert row.curve == serial.rows[arch_id].curve and row.test_accuracy == serial.rows[arch_id].test_accuracy
