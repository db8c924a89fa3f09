"""Resuming a study: a resume with other settings is refused before any trial exists; a killed worker's trial is
recorded with why it failed and queued again; a worker waiting on it says what for and how long; a search whose
every trial failed says so and why."""

from __future__ import annotations

import logging
import time

import optuna
import pytest

from nasscale.errors import NasscaleError
from nasscale.search.config import SearchConfig
from nasscale.search.record import (
    ATTR_FAIL_REASON,
    ATTR_RETRIED_FROM,
    ATTR_SEED,
    ATTR_TRAINED,
    ATTR_WORKER,
    STUDY_ATTR_CONFIG,
    STUDY_ATTR_SPACE,
    STUDY_ATTR_SPLITS,
)
from nasscale.search.resume import WaitNotice, check_resume, fail_stale_trials
from nasscale.search.storage import make_storage
from nasscale.search.trials import is_evaluated
from tests.cli.test_cli_foundation import run_cli

RECORDED = {STUDY_ATTR_CONFIG: {"space": "tiny", "data": "digits"}, STUDY_ATTR_SPACE: {"name": "tiny"},
            STUDY_ATTR_SPLITS: {"validation_fraction": 0.1, "split_seed": 0}}


@pytest.mark.parametrize(("config", "space", "expected"), [
    (SearchConfig(space="mnas"), {"name": "tiny"}, "searches space tiny, not mnas; resume it with --space tiny"),
    (SearchConfig(space="tiny", data="fashion-mnist"), {"name": "tiny"}, "searches data digits, not fashion-mnist"),
    (SearchConfig(space="tiny"), {"name": "tiny", "resolution": 64}, "is not the one the study started with"),
    (SearchConfig(space="tiny", split_seed=1), {"name": "tiny"}, "split_seed 0, not 1: its accuracies"),
    (SearchConfig(space="tiny", validation_fraction=0.2), {"name": "tiny"}, "--validation-fraction 0.1"),
])
def test_a_resume_with_other_settings_is_refused(config, space, expected):
    with pytest.raises(NasscaleError, match=expected):
        check_resume("s", RECORDED, config, space)
    check_resume("s", RECORDED, SearchConfig(space="tiny"), {"name": "tiny"})  # the same settings resume


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_killed_workers_trial_records_why_and_is_queued_again(tmp_path, monkeypatch):
    monkeypatch.setenv("NASSCALE_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("NASSCALE_GRACE_SECONDS", "2")
    storage = make_storage(f"journal:{tmp_path / 'study.log'}")
    study = optuna.create_study(study_name="killed", storage=storage)
    trial = study.ask()
    trial.suggest_int("width", 1, 9)
    for key, value in ((ATTR_TRAINED, True), (ATTR_SEED, 7), (ATTR_WORKER, "host:123")):
        trial.set_user_attr(key, value)
    storage.record_heartbeat(trial._trial_id)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3)
    fail_stale_trials(study)
    killed, retry = study.get_trials()
    assert killed.state is optuna.trial.TrialState.FAIL
    assert killed.user_attrs[ATTR_FAIL_REASON] == ("host:123 stopped (killed or lost: no heartbeat for 2 s); "
                                                   "queued again")
    assert not is_evaluated(killed)  # it holds no slot: its retry trains it
    assert retry.state is optuna.trial.TrialState.WAITING and retry.user_attrs[ATTR_RETRIED_FROM] == 0


def test_a_waiting_worker_says_what_for_and_how_long_once(caplog, monkeypatch):
    monkeypatch.setenv("NASSCALE_GRACE_SECONDS", "30")
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr(ATTR_TRAINED, True)
    trial.set_user_attr(ATTR_WORKER, "host:123")
    notice = WaitNotice()
    with caplog.at_level(logging.WARNING, logger="nasscale.search.resume"):
        notice(study, 1)
        notice(study, 1)
    assert len(caplog.messages) == 1
    assert caplog.messages[0] == ("waiting for trials 0 (host:123), which hold the last of the study's 1 slots: if "
                                  "a worker is gone (killed), its trial is failed and queued again 30 s after its "
                                  "last heartbeat (NASSCALE_GRACE_SECONDS)")


def test_a_search_whose_every_trial_failed_says_why(capsys, tmp_path, monkeypatch):
    import nasscale.search.backends.optuna_backend as backend

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    monkeypatch.setattr(backend, "train_architecture", out_of_memory)
    code, out, err = run_cli(capsys, "search", "--space", "tiny", "--trials", "2", "--storage",
                             f"sqlite:///{tmp_path / 'failed.db'}", "--study", "failed")
    assert code == 2 and "Next:" not in out
    assert err.strip().splitlines()[-1] == (
        "nasscale: error: study 'failed': every one of its 2 trials failed or was pruned; the most common reason "
        "(2 of them): RuntimeError: CUDA out of memory. Tried to allocate 2 GiB")
