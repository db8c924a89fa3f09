"""Reading a study back: trials as a table, the Pareto front, one trial's architecture.

The study is the single record of a search, so everything here works from the storage alone,
whichever backend ran it.
"""

from __future__ import annotations

import collections
from typing import Any, cast

import optuna

from nasscale.errors import SpecError, UnknownNameError
from nasscale.search.record import (
    ATTR_ACCURACY,
    ATTR_ARCH,
    ATTR_ARCH_ID,
    ATTR_DUPLICATE_OF,
    ATTR_EVALUATOR,
    ATTR_FAIL_REASON,
    ATTR_INFEASIBLE,
    ATTR_LATENCY,
    ATTR_LATENCY_SOURCE,
    ATTR_MACS,
    ATTR_PARAMS,
    ATTR_RUNGS,
    ATTR_SKIPPED,
    ATTR_SUMMARY,
    ATTR_TIMINGS,
    ATTR_TRAIN_TIME,
)
from nasscale.search.storage import make_storage, require_existing_storage
from nasscale.search.trials import is_evaluated
from nasscale.spec.arch import Arch
from nasscale.spec.serialization import from_dict

# val_accuracy: validation accuracy after proxy training (on the split carved from the training data; no trial
# ever sees the test set), or the zero-cost score that `evaluator` names (then a table heads it "score (NAME)",
# see config.accuracy_label). latency_ms: predicted from a table or measured, as
# latency_source says; absent when the search did not need it. train_time_ms: measured milliseconds per image of
# one SGD training step (the train_time objective, --max-train-ms); train_seconds: the trial's whole proxy training.
TABLE_COLUMNS = ["trial", "state", "val_accuracy", "macs", "params", "latency_ms", "train_time_ms", "value",
                 "arch_id", "summary", "train_seconds", "note", "evaluator", "latency_source"]


def open_study(name: str, storage_url: str) -> optuna.Study:
    storage = make_storage(storage_url)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
    if name not in names:
        listing = ", ".join(sorted(names)) if names else "none"
        raise UnknownNameError(f"study {name!r} not found in {storage_url} (studies there: {listing}); "
                               "check --study and --storage")
    return optuna.load_study(study_name=name, storage=storage)


def sole_study(storage_url: str) -> str:
    """The one study of a storage, for a command given none; else one line listing them, or how to start one."""
    try:
        require_existing_storage(storage_url)  # a missing file holds no study: it is not created to find that out
        names = sorted(summary.study_name for summary in optuna.get_all_study_summaries(make_storage(storage_url)))
    except UnknownNameError:
        names = []
    if len(names) == 1:
        return names[0]
    if not names:
        raise UnknownNameError(f"no study in {storage_url} to take the baseline from; give --base PRESET_OR_FILE, or "
                               "start a search first ('nasscale search --space tiny --trials 8')")
    raise UnknownNameError(f"{len(names)} studies in {storage_url} ({', '.join(names)}); pick one with --study NAME, "
                           "or give --base PRESET_OR_FILE")


def trial_row(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    note = attrs.get(ATTR_INFEASIBLE) or attrs.get(ATTR_FAIL_REASON) or ""
    if trial.state is optuna.trial.TrialState.PRUNED and not note:
        note = "pruned"
    return {
        "trial": trial.number,
        "state": trial.state.name.lower(),
        "val_accuracy": attrs.get(ATTR_ACCURACY),
        "macs": attrs.get(ATTR_MACS),
        "params": attrs.get(ATTR_PARAMS),
        "latency_ms": attrs.get(ATTR_LATENCY),
        "train_time_ms": attrs.get(ATTR_TRAIN_TIME),
        "value": trial.values[0] if trial.values and len(trial.values) == 1 else None,
        "arch_id": attrs.get(ATTR_ARCH_ID),
        "summary": attrs.get(ATTR_SUMMARY),
        "train_seconds": attrs.get(ATTR_TIMINGS, {}).get("train_seconds"),
        "note": note,
        "evaluator": attrs.get(ATTR_EVALUATOR),
        "latency_source": attrs.get(ATTR_LATENCY_SOURCE),
    }


def trials_frame(study: optuna.Study):
    import pandas

    rows = [trial_row(trial) for trial in study.get_trials(deepcopy=False)]
    return pandas.DataFrame(rows, columns=TABLE_COLUMNS)


def best_trials(study: optuna.Study, *, top: int = 10) -> list[optuna.trial.FrozenTrial]:
    """The Pareto-optimal trials of a multi-objective study (by accuracy), or the top trials by value."""
    if len(study.directions) > 1:
        front = study.best_trials
        return sorted(front, key=lambda trial: -(trial.user_attrs.get(ATTR_ACCURACY) or 0.0))
    complete = [trial for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    maximize = study.direction is optuna.study.StudyDirection.MAXIMIZE
    # A complete trial of a single-objective study has its value.
    return sorted(complete, key=lambda trial: cast(float, trial.value), reverse=maximize)[:top]


def best_frame(study: optuna.Study, *, top: int = 10):
    import pandas

    return pandas.DataFrame([trial_row(trial) for trial in best_trials(study, top=top)], columns=TABLE_COLUMNS)


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """What became of the study's trials: evaluated (what --trials counts), of them fully trained and stopped
    early (by MO-ASHA, or Optuna's pruner); and samples not trained because they repeated an evaluated
    architecture, broke a budget, or found every slot taken."""
    trials = study.get_trials(deepcopy=False)
    evaluated = [trial for trial in trials if is_evaluated(trial)]
    stopped = [trial for trial in evaluated if trial.state is optuna.trial.TrialState.PRUNED]
    return {"trials": len(trials), "evaluated": len(evaluated),
            "complete": sum(trial.state is optuna.trial.TrialState.COMPLETE for trial in evaluated),
            "stopped_early": len(stopped),
            "stopped_by_mo_asha": sum(ATTR_RUNGS in trial.user_attrs for trial in stopped),
            "duplicates_avoided": sum(ATTR_DUPLICATE_OF in trial.user_attrs for trial in trials),
            "over_budget": sum(ATTR_INFEASIBLE in trial.user_attrs for trial in trials),
            "skipped": sum(ATTR_SKIPPED in trial.user_attrs for trial in trials)}


def describe_counts(counts: dict[str, int]) -> str:
    """One line of ``trial_counts`` for people, naming only what happened."""
    parts = [f"{counts['evaluated']} evaluated"]
    if counts["stopped_early"]:
        parts[0] += f" ({counts['stopped_early']} of them stopped early)"
    for key, one, many in (("duplicates_avoided", "repeat of an evaluated architecture, not trained again",
                            "repeats of evaluated architectures, not trained again"),
                           ("over_budget", "over budget", "over budget"),
                           ("skipped", "skipped (all slots taken)", "skipped (all slots taken)")):
        if counts[key]:
            parts.append(f"{counts[key]} {one if counts[key] == 1 else many}")
    return f"{counts['trials']} trials in the study: " + ", ".join(parts)


def failure_summary(study: optuna.Study) -> str | None:
    """None once a trial has completed; else one line: no trial has, and the most common reason."""
    finished = [trial for trial in study.get_trials(deepcopy=False) if trial.state.is_finished()]
    if not finished or any(trial.state is optuna.trial.TrialState.COMPLETE for trial in finished):
        return None
    reasons = collections.Counter(trial_row(trial)["note"] or trial.state.name.lower() for trial in finished)
    reason, count = reasons.most_common(1)[0]
    return (f"study {study.study_name!r}: every one of its {len(finished)} trials failed or was pruned; the most "
            f"common reason ({count} of them): {reason}")


def get_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise UnknownNameError(f"study {study.study_name!r} has no trial {number} (trials 0..{len(trials) - 1})")
    return trials[number]


def require_result(trial: optuna.trial.FrozenTrial) -> None:
    """A trial to export has a result: one pruned over budget (or skipped, or failed) was never trained."""
    if trial.state is optuna.trial.TrialState.COMPLETE:
        return
    state, note = trial.state.name.lower(), trial_row(trial)["note"]
    detail = f": {note}" if note and note != state else ""
    raise SpecError("--trial", f"trial {trial.number} has no result ({state}{detail}); pick a completed one "
                               "('nasscale best'), or add --allow-untrained to export it anyway")


def trial_arch(trial: optuna.trial.FrozenTrial) -> Arch:
    if ATTR_ARCH not in trial.user_attrs:
        raise UnknownNameError(f"trial {trial.number} recorded no architecture (state {trial.state.name.lower()})")
    return from_dict(trial.user_attrs[ATTR_ARCH], source=f"trial {trial.number}")
