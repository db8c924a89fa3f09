"""Trial accounting shared by every worker of a study: which trials count towards ``--trials``, which hold a
slot, which wait to run, and how a trial whose worker died is queued again (with its parameters and seed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from nasscale.search.record import (
    ATTR_FAIL_REASON,
    ATTR_INTERRUPTED,
    ATTR_RETRIED_FROM,
    ATTR_SEED,
    ATTR_TRAINED,
    SYSTEM_ATTR_FAILED_TRIAL,
    SYSTEM_ATTR_RETRY_HISTORY,
)

logger = logging.getLogger(__name__)

# Times a killed or interrupted trial is queued again before it is dropped.
MAX_RETRIES = 2


def failure_reason(error: BaseException) -> str:
    """``TYPE: first line of the message``, e.g. ``OutOfMemoryError: CUDA out of memory. ...``."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def is_trained(trial: optuna.trial.FrozenTrial) -> bool:
    return bool(trial.user_attrs.get(ATTR_TRAINED, False))


def was_cut_short(trial: optuna.trial.FrozenTrial) -> bool:
    """Failed without a result of its own: its worker was killed (heartbeat) or interrupted."""
    attrs = trial.user_attrs
    return trial.state is TrialState.FAIL and (ATTR_FAIL_REASON not in attrs or attrs.get(ATTR_INTERRUPTED, False))


def is_evaluated(trial: optuna.trial.FrozenTrial) -> bool:
    """Trials that count towards --trials: trained to an end (finished, pruned by the pruner, or failed with
    their own reason such as divergence), not cut short by a killed or interrupted worker."""
    return is_trained(trial) and trial.state.is_finished() and not was_cut_short(trial)


def holds_slot(trial: optuna.trial.FrozenTrial) -> bool:
    return is_evaluated(trial) or (trial.state is TrialState.RUNNING and is_trained(trial))


def is_queued(trial: optuna.trial.FrozenTrial) -> bool:
    """Waiting to run (a retry, or a trial someone enqueued), or a retry that has not claimed its slot yet."""
    unclaimed_retry = (trial.state is TrialState.RUNNING and ATTR_RETRIED_FROM in trial.user_attrs
                       and not is_trained(trial))
    return trial.state is TrialState.WAITING or unclaimed_retry


@dataclass(frozen=True, slots=True)
class Ledger:
    """The study-wide counts a worker decides on."""

    evaluated: int
    held: int

    @classmethod
    def read(cls, study: optuna.Study) -> Ledger:
        trials = study.get_trials(deepcopy=False)
        return cls(evaluated=sum(map(is_evaluated, trials)), held=sum(map(holds_slot, trials)))


def retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Heartbeat callback for a trial whose worker died: queue it again if it had started training."""
    if is_trained(trial) or ATTR_RETRIED_FROM in trial.user_attrs:
        enqueue_retry(study, trial)


def enqueue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial`` again with its parameters (hence its architecture) and its seed.

    Not Optuna's RetryHeartbeatStaleTrialCallback: it copies every user attribute, and a copied ``trained``
    flag would count the retry as holding a slot before it claims one. The system attributes are Optuna's,
    so ``RetryHeartbeatStaleTrialCallback.retried_trial_number`` works on these retries too.
    """
    history = [*trial.system_attrs.get(SYSTEM_ATTR_RETRY_HISTORY, []), trial.number]
    if len(history) > MAX_RETRIES:
        logger.warning("trial %d failed %d times in a row; not retried", history[0], len(history))
        return
    user_attrs: dict[str, Any] = {ATTR_RETRIED_FROM: trial.number}
    if ATTR_SEED in trial.user_attrs:
        user_attrs[ATTR_SEED] = trial.user_attrs[ATTR_SEED]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions, user_attrs=user_attrs,
        system_attrs={SYSTEM_ATTR_FAILED_TRIAL: history[0], SYSTEM_ATTR_RETRY_HISTORY: history}))
