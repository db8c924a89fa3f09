"""Resuming a study: the settings a resume must agree with (checked before any trial is created), and the trials
of a worker that died (killed, lost): recorded with why they failed, and waited for with a word on how long.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled  # the heartbeat interface, not re-exported
from optuna.trial import TrialState

from nasscale.errors import NasscaleError
from nasscale.search.config import FIELD_DEFAULTS, SearchConfig
from nasscale.search.record import (
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_WORKER,
    STUDY_ATTR_CONFIG,
    STUDY_ATTR_OBJECTIVES,
    STUDY_ATTR_SPACE,
    STUDY_ATTR_SPLITS,
)
from nasscale.search.storage import GRACE_VARIABLE, heartbeat_settings
from nasscale.search.trials import holds_slot, is_trained

logger = logging.getLogger(__name__)


class ResumeRefused(NasscaleError):
    """The study was started with other settings than the command that would resume it."""


RUNG_FIELDS = ("pruner", "min_epochs", "reduction_factor", "epochs")


def check_rungs(name: str, started: Mapping[str, Any], config: SearchConfig) -> None:
    """A study stopped by MO-ASHA resumes with the same rungs (or none), since its trials rank against the rung
    records of the trials before them; and one without it is not resumed with it, for the same reason."""
    if not started or "mo-asha" not in (started.get("pruner"), config.pruner):
        return
    for field in RUNG_FIELDS:
        before = started.get(field, FIELD_DEFAULTS[field])  # a study older than the field ran on its default
        if before != getattr(config, field):
            flag = "--" + field.replace("_", "-")
            raise ResumeRefused(f"study {name!r} was searched with {field} {before}, not {getattr(config, field)}: "
                                f"its MO-ASHA rungs would not compare; resume it with {flag} {before}, or give "
                                "--study NEW_NAME for a new study")


def check_resume(name: str, recorded: Mapping[str, Any], config: SearchConfig, space: Mapping[str, Any]) -> None:
    """Refuse to resume study ``name`` (its user attributes ``recorded``) with another space, objectives or data:
    its sampler's history would not fit the new choices. A study that recorded nothing is not checked."""
    started = recorded.get(STUDY_ATTR_CONFIG) or {}
    fix = "use the study's settings to resume it, or --study NEW_NAME for a new study"
    objectives = recorded.get(STUDY_ATTR_OBJECTIVES)
    if objectives is not None and objectives != config.objective_names:
        raise ResumeRefused(f"study {name!r} optimises {','.join(objectives)}, not "
                            f"{','.join(config.objective_names)}; {fix}")
    for field in ("space", "data"):
        if field in started and started[field] != getattr(config, field):
            raise ResumeRefused(f"study {name!r} searches {field} {started[field]}, not {getattr(config, field)}; "
                                f"resume it with --{field} {started[field]}, or give --study NEW_NAME for a new study")
    splits = recorded.get(STUDY_ATTR_SPLITS) or {}
    for field in ("validation_fraction", "split_seed"):
        if field in splits and splits[field] != getattr(config, field):
            flag = "--" + field.replace("_", "-")
            raise ResumeRefused(f"study {name!r} chose on a validation split with {field} {splits[field]}, not "
                                f"{getattr(config, field)}: its accuracies would not compare; resume it with "
                                f"{flag} {splits[field]}, or give --study NEW_NAME for a new study")
    check_rungs(name, started, config)
    if STUDY_ATTR_SPACE in recorded and recorded[STUDY_ATTR_SPACE] != dict(space):
        raise ResumeRefused(f"study {name!r}: space {config.space} is not the one the study started with (its file "
                            f"or its deployment resolution changed since); {fix}")


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's ``fail_stale_trials``, after recording on each trial whose worker stopped beating why it failed
    (a finished trial takes no attributes, so this comes first). Marked interrupted: it did not fail on its own,
    so it holds no slot and its retry trains it again."""
    storage = study._storage
    if not is_heartbeat_enabled(storage):
        return
    stale = set(storage._get_stale_trial_ids(study._study_id))  # type: ignore[attr-defined]
    grace_seconds = heartbeat_settings()[1]
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id in stale:
            worker = trial.user_attrs.get(ATTR_WORKER, "its worker")
            retried = "queued again" if is_trained(trial) else "not trained, so not queued again"
            try:
                storage.set_trial_user_attr(trial._trial_id, ATTR_FAIL_REASON,
                                            f"{worker} stopped (killed or lost: no heartbeat for {grace_seconds} s); "
                                            f"{retried}")
                storage.set_trial_user_attr(trial._trial_id, ATTR_INTERRUPTED, True)
            except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
                pass  # another worker failed it first
    optuna.storages.fail_stale_trials(study)


class WaitNotice:
    """Says once, for each set of running trials a worker waits on, what it waits for and for how long at most."""

    def __init__(self) -> None:
        self.grace_seconds = heartbeat_settings()[1]
        self.announced: frozenset[int] = frozenset()

    def __call__(self, study: optuna.Study, total: int) -> None:
        running = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if holds_slot(trial)]
        numbers = frozenset(trial.number for trial in running)
        if not numbers or numbers == self.announced:
            return
        self.announced = numbers
        listed = ", ".join(f"{trial.number} ({trial.user_attrs.get(ATTR_WORKER, 'unknown worker')})"
                           for trial in running)
        logger.warning("waiting for trials %s, which hold the last of the study's %d slots: if a worker is gone "
                       "(killed), its trial is failed and queued again %d s after its last heartbeat (%s)",
                       listed, total, self.grace_seconds, GRACE_VARIABLE)
