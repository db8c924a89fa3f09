"""Training time (EfficientNetV2's training-aware objective): the measurement and its cache, the train_time objective
and the --max-train-ms budget of a search, on the tiny space with digits. No assertion depends on how fast anything
ran: which samples break a budget is made deterministic by a stand-in measurement where it matters."""

import math

import optuna
import pytest
import torch

from nasscale.errors import SpecError
from nasscale.evaluate import train_time
from nasscale.search import objective
from nasscale.search.config import make_config
from nasscale.search.objective import SearchContext, assess, train_time_setup
from nasscale.search.record import ATTR_INFEASIBLE, ATTR_TRAIN_TIME, ATTR_TRAIN_TIME_SETUP, ATTR_TRAINED
from nasscale.space.parsing import load_space
from nasscale.space.sampling import RandomChooser, sample
from nasscale.spec.cost import cost
from nasscale.spec.serialization import from_dict
from tests.cli.test_cli_foundation import run_cli
from tests.search.test_search import FAST, evaluated, load, storage_url

QUICK = [*FAST, "--max-train-samples", "600"]
DIGITS_SHAPE = {"in_channels": 1, "num_classes": 10}


@pytest.fixture(autouse=True)
def fresh_cache():
    train_time.clear_cache()
    yield
    train_time.clear_cache()


def tiny_arch(seed: int = 0):
    return sample(load_space("tiny"), RandomChooser(seed), **DIGITS_SHAPE)


def measure(arch, **overrides):
    settings = {"batch_size": 8, "resolution": arch.resolution, **DIGITS_SHAPE, "threads": 1, "device": "cpu",
                "repeats": 2, "warmup": 1} | overrides
    return train_time.measure_train_step_ms(arch, **settings)


def search(capsys, tmp_path, study: str, *args: str) -> optuna.Study:
    code, _, err = run_cli(capsys, "search", *QUICK, "--storage", storage_url(tmp_path), "--study", study, "--json",
                           *args)
    assert code == 0, err
    return load(tmp_path, study)


# ------------------------------------------------------------------------------------------ measurement


def test_measurement_is_positive_finite_and_cached(monkeypatch):
    builds, timings = [], []
    real_build, real_time = train_time.build, train_time.time_train_steps
    monkeypatch.setattr(train_time, "build", lambda arch: builds.append(arch.arch_id) or real_build(arch))
    monkeypatch.setattr(train_time, "time_train_steps",
                        lambda model, **kw: timings.append(kw) or real_time(model, **kw))
    arch = tiny_arch()
    first = measure(arch)
    assert math.isfinite(first) and first > 0
    assert measure(arch) == first and measure(arch, repeats=5) == first  # the key leaves repeats out
    assert builds == [arch.arch_id] and len(timings) == 1
    measure(arch, batch_size=4)  # another key: measured again
    assert len(builds) == 2 and timings[-1]["batch_size"] == 4


def test_a_model_is_measured_on_a_copy():
    from nasscale.models.build import build

    model = build(tiny_arch()).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    value = train_time.measure_train_step_ms(model, batch_size=4, resolution=16, **DIGITS_SHAPE, repeats=1, warmup=0)
    assert value > 0 and not model.training  # the steps ran in train mode on a copy
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())


def test_bad_measurement_settings_are_one_line():
    with pytest.raises(SpecError, match="batch_size: must be an integer of at least 1"):
        measure(tiny_arch(), batch_size=0)
    with pytest.raises(SpecError, match="takes 1 channels and 10 classes, not 3 and 10"):
        measure(tiny_arch(), in_channels=3)


# ----------------------------------------------------------------------------------------------- config


def test_train_time_is_a_minimized_objective_and_a_budget():
    config = make_config({"objectives": "accuracy,train_time"})
    assert config.directions == ["maximize", "minimize"] and config.objective_names == ["accuracy", "train_time"]
    assert config.needs_train_time and not make_config({}).needs_train_time
    assert make_config({"max_train_ms": "500us"}).max_train_ms == pytest.approx(0.5)
    assert make_config({"max_train_ms": 2}).needs_train_time
    with pytest.raises(SpecError, match="train_time is an objective of the multi-objective search"):
        make_config({"objectives": "accuracy,train_time", "reward": "mnas", "target_macs": "1M"})


@pytest.mark.parametrize("value", ["-1", "nan", "0", "fast"])
def test_bad_budgets_exit_2_with_one_line(capsys, tmp_path, value):
    code, _, err = run_cli(capsys, "search", *QUICK, "--storage", storage_url(tmp_path), "--max-train-ms", value)
    assert code == 2 and err.startswith("nasscale: error: max_train_ms: must be a positive finite number"), err
    assert "--max-train-ms" in err and err.count("\n") == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------------------------- search


def test_search_on_accuracy_and_train_time_records_it_on_every_trial(capsys, tmp_path):
    study = search(capsys, tmp_path, "train-time", "--objectives", "accuracy,train_time", "--trials", "2")
    assert study.user_attrs["nasscale_objectives"] == ["accuracy", "train_time"]
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 2
    for trial in complete:
        attrs = trial.user_attrs
        assert math.isfinite(attrs[ATTR_TRAIN_TIME]) and attrs[ATTR_TRAIN_TIME] > 0
        arch = from_dict(attrs["arch"])
        assert attrs[ATTR_TRAIN_TIME_SETUP] == {"resolution": arch.resolution, "batch_size": 128, "threads": 1,
                                                "device": "cpu"}
        assert trial.values == [attrs["accuracy"], attrs[ATTR_TRAIN_TIME]]
    code, out, _ = run_cli(capsys, "best", "--study", "train-time", "--storage", storage_url(tmp_path))
    assert code == 0 and "train ms/image" in out
    code, _, err = run_cli(capsys, "report", "--study", "train-time", "--storage", storage_url(tmp_path), "--out",
                           str(tmp_path / "report.html"))
    assert code == 0, err
    page = (tmp_path / "report.html").read_text()
    assert "against training time (ms\\u002fimage)" in page  # the figure's title, in plotly's JSON
    assert "train ms/image" in page and "training time measured per architecture" in page


def test_a_recorded_train_time_is_reused_not_measured(monkeypatch):
    """What a resumed study, or a repeat of an architecture, does: the study's record of the same architecture
    measured with the same settings stands; other settings are measured afresh."""
    config = make_config({"space": "tiny", "objectives": "accuracy,train_time", "batch_size": 128})
    space = load_space("tiny")
    context = SearchContext(config, space, None, None, 1, 10)
    arch = tiny_arch(3)
    recorded = [{"arch_id": arch.arch_id, ATTR_TRAIN_TIME: 0.25, ATTR_TRAIN_TIME_SETUP: train_time_setup(arch, config)}]

    def refuse(*args, **kwargs):
        raise AssertionError("measured although the study recorded it")

    monkeypatch.setattr(train_time, "measure_train_step_ms", refuse)
    candidate = assess(arch, context, recorded=recorded)
    assert candidate.train_ms == 0.25 and candidate.attributes()[ATTR_TRAIN_TIME] == 0.25
    other_threads = [recorded[0] | {ATTR_TRAIN_TIME_SETUP: train_time_setup(arch, config) | {"threads": 2}}]
    with pytest.raises(AssertionError, match="measured although"):
        assess(arch, context, recorded=other_threads)


def test_a_tiny_budget_refuses_every_sample_untrained(capsys, tmp_path, monkeypatch):
    from nasscale.search.backends import optuna_backend

    trained = []
    monkeypatch.setattr(optuna_backend, "train_architecture", lambda *args, **kwargs: trained.append(args))
    code, _, err = run_cli(capsys, "search", *QUICK, "--storage", storage_url(tmp_path), "--study", "tight",
                           "--max-train-ms", "1e-9", "--trials", "2", "--timeout", "2")
    assert code == 2 and "every one of its" in err and "train time" in err and err.count("\n") == 1, err
    study = load(tmp_path, "tight")
    assert study.trials and not trained and not evaluated(study)
    for trial in study.trials:
        attrs = trial.user_attrs
        assert trial.state is optuna.trial.TrialState.PRUNED
        assert "ms/image (measured) > budget" in attrs[ATTR_INFEASIBLE]
        assert attrs[ATTR_TRAIN_TIME] > 1e-9 and not attrs.get(ATTR_TRAINED) and "accuracy" not in attrs


def test_the_budget_splits_samples_like_max_latency(capsys, tmp_path, monkeypatch):
    """A stand-in measurement (MACs / 1M ms per image) makes which samples break the budget known in advance."""
    from nasscale.space.extent import mac_range

    monkeypatch.setattr(objective, "measured_train_time", lambda arch, config: cost(arch).macs / 1e6)
    smallest, largest = mac_range(load_space("tiny"), **DIGITS_SHAPE)
    budget = (smallest + (largest - smallest) / 5) / 1e6
    study = search(capsys, tmp_path, "split", "--objectives", "accuracy,train_time", "--max-train-ms", f"{budget}",
                   "--trials", "3", "--sampler", "random")
    refused = [trial for trial in study.trials if ATTR_INFEASIBLE in trial.user_attrs]
    assert refused, "the budget should refuse some of tiny's samples"
    assert all(trial.user_attrs[ATTR_TRAIN_TIME] > budget and not trial.user_attrs.get(ATTR_TRAINED)
               for trial in refused)
    trials = evaluated(study)
    assert len(trials) == 3 and all(trial.user_attrs[ATTR_TRAIN_TIME] <= budget for trial in trials)
    assert study.user_attrs["nasscale_config"]["max_train_ms"] == pytest.approx(budget)
