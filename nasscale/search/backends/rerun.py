"""Re-running one recorded trial exactly, whichever backend and worker trained it.

A trial records its architecture (``arch``), its seed, and the proxy settings it was trained with
(``proxy_settings``; older trials fall back on the study's ``nasscale_config``). Training is seeded and
single-threaded by default, so on a CPU the re-run repeats the recorded accuracies to the last digit. A
trial stopped early (pruned) is compared on the epochs it reported; a trial of a study scored by a
zero-cost proxy (``--evaluator zero-cost:NAME``) is scored again, not trained.
"""

from __future__ import annotations

import time
from typing import Any

import optuna

from nasscale.errors import UnknownNameError
from nasscale.search.config import CONFIG_FIELDS, SearchConfig, make_config
from nasscale.search.objective import SearchError, prepare_context, score_architecture, train_architecture
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH_ID,
    ATTR_HISTORY,
    ATTR_INFEASIBLE,
    ATTR_PROXY_SETTINGS,
    ATTR_SEED,
    STUDY_ATTR_CONFIG,
    STUDY_ATTR_RESOLUTION,
)
from nasscale.search.results import get_trial, open_study, trial_arch


def recorded_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> SearchConfig:
    stored = study.user_attrs.get(STUDY_ATTR_CONFIG)
    if stored is None:
        raise UnknownNameError(f"study {study.study_name!r} records no search settings ({STUDY_ATTR_CONFIG}); "
                               "only studies made by 'nasscale search' can be re-run")
    if study.user_attrs.get(STUDY_ATTR_RESOLUTION) is None:
        raise UnknownNameError(f"study {study.study_name!r} predates the evaluation protocol (no deployment resolution "
                               "or validation split recorded): its trials trained on other splits and sizes than "
                               "a rerun would, so they cannot be reproduced; search again into a new --study")
    values = {key: value for key, value in stored.items() if key in CONFIG_FIELDS}
    values |= trial.user_attrs.get(ATTR_PROXY_SETTINGS, {})
    return make_config(values)


def recorded_accuracies(trial: optuna.trial.FrozenTrial) -> dict[int, float]:
    """Validation accuracy per epoch as recorded: the history of a finished trial, else what it reported."""
    history = trial.user_attrs.get(ATTR_HISTORY)
    if history:
        return {int(row[0]): float(row[2]) for row in history}
    return {int(step): float(value) for step, value in trial.intermediate_values.items()}


def rerun_trial(study_name: str, number: int, storage: str) -> dict[str, Any]:
    """Retrain trial ``number`` from its record and compare the accuracies epoch by epoch."""
    study = open_study(study_name, storage)
    trial = get_trial(study, number)
    if ATTR_SEED not in trial.user_attrs:
        why = trial.user_attrs.get(ATTR_INFEASIBLE) or f"state {trial.state.name.lower()}"
        raise SearchError(f"trial {number} of study {study_name!r} was never trained ({why}); nothing to re-run")
    arch = trial_arch(trial)
    config = recorded_config(study, trial)
    seed = int(trial.user_attrs[ATTR_SEED])
    rerun: dict[int, float] = {}
    started = time.perf_counter()
    context = prepare_context(config)
    recorded_accuracy = trial.user_attrs.get(ATTR_ACCURACY)
    if config.zero_cost_proxy is not None:  # --evaluator zero-cost:NAME: the trial was scored, not trained
        result = score_architecture(arch, context, seed=seed)
        epochs: list[dict[str, Any]] = []
        identical = recorded_accuracy is not None and result[ATTR_ACCURACY] == recorded_accuracy
    else:
        result = train_architecture(arch, context, seed=seed,
                                    on_epoch=lambda epoch, accuracy: rerun.__setitem__(epoch, accuracy))
        recorded = recorded_accuracies(trial)
        epochs = [{"epoch": epoch, "recorded": recorded.get(epoch), "rerun": accuracy}
                  for epoch, accuracy in rerun.items()]
        compared = [row for row in epochs if row["recorded"] is not None]
        identical = bool(compared) and all(row["recorded"] == row["rerun"] for row in compared)
    return {
        "study": study_name, "trial": number, "state": trial.state.name.lower(),
        "arch_id": trial.user_attrs.get(ATTR_ARCH_ID), "seed": seed, "threads": config.threads,
        "evaluator": config.evaluator, "recorded_accuracy": recorded_accuracy,
        "rerun_accuracy": result[ATTR_ACCURACY], "identical": identical, "epochs": epochs,
        "seconds": time.perf_counter() - started,
    }
