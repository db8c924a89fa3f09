"""MO-ASHA: the rungs, the promotion rule on hand-made curves, and the record every worker ranks against."""

import optuna
import pytest

from nasscale.errors import SpecError
from nasscale.search.config import SearchConfig
from nasscale.search.early_stopping import MultiObjectiveAsha, is_promoted, rung_epochs, rung_values
from nasscale.search.record import ATTR_RUNGS

DIRECTIONS = ["maximize", "minimize"]  # accuracy, MACs


def test_rungs_are_min_epochs_times_powers_of_eta_below_the_budget():
    assert rung_epochs(1, 3, 9) == (1, 3)
    assert rung_epochs(1, 3, 10) == (1, 3, 9)
    assert rung_epochs(2, 2, 16) == (2, 4, 8)
    assert rung_epochs(1, 2, 4) == (1, 2)
    assert rung_epochs(4, 3, 4) == ()


def test_while_a_rung_holds_fewer_than_eta_trials_only_an_unbeaten_one_goes_on():
    assert is_promoted((0.5, 100), [], DIRECTIONS, 3)  # the first trial at a rung
    assert not is_promoted((0.4, 200), [(0.5, 100)], DIRECTIONS, 3)  # dominated
    assert is_promoted((0.3, 50), [(0.5, 100)], DIRECTIONS, 3)  # worse but cheaper: on the front, an extreme


def test_the_top_third_by_non_dominated_sorting_goes_on():
    # Six trials at a rung: the front is (0.9, 90), (0.7, 30), (0.5, 10); keep = 6 // 3 = 2 better at most 1.
    others = [(0.9, 90), (0.7, 30), (0.5, 10), (0.6, 60), (0.4, 80)]
    assert is_promoted((0.85, 95), others, DIRECTIONS, 3) is False  # rank 1: all three front members beat it
    assert is_promoted((0.95, 200), others, DIRECTIONS, 3)  # joins the front as an extreme: infinite crowding
    # The front's middle member: its crowding is finite, the two extremes' infinite, so two rank better.
    middle = [(0.9, 90), (0.5, 10), (0.6, 60), (0.4, 80), (0.3, 70)]
    assert not is_promoted((0.7, 30), middle, DIRECTIONS, 3)
    assert is_promoted((0.7, 30), middle, DIRECTIONS, 2)  # eta 2 keeps three of six


def test_a_single_objective_rung_keeps_the_best_values():
    values = [[0.1], [0.2], [0.3], [0.4], [0.5], [0.6]]
    assert is_promoted([0.61], values, ["maximize"], 3)
    assert is_promoted([0.55], values, ["maximize"], 3)  # one better, keep two
    assert not is_promoted([0.45], values, ["maximize"], 3)


def test_curves_are_stopped_at_the_right_rung_and_the_record_says_why():
    """Hand-made learning curves, each a trial's accuracy after epochs 1..9 at fixed MACs: rungs 1 and 3."""
    asha = MultiObjectiveAsha.from_settings(min_epochs=1, reduction_factor=3, epochs=9)
    study = optuna.create_study(directions=DIRECTIONS)
    curves = {  # name: (MACs, accuracy after epochs 1, 2, 3)
        "A": (100, [0.50, 0.60, 0.70]),  # first at both rungs: goes on
        "B": (120, [0.40, 0.45, 0.50]),  # dominated by A at epoch 1, with fewer than eta there: stopped
        "C": (10, [0.20, 0.30, 0.40]),  # worst but cheapest: an extreme of the front at both rungs
        "D": (200, [0.55, 0.58, 0.60]),  # the most accurate at epoch 1 (an extreme), dominated by A at epoch 3
        "E": (50, [0.45, 0.50, 0.55]),  # on the front at epoch 1, but in its middle: both extremes rank better
    }
    stopped_at = {}
    for name, (macs, curve) in curves.items():
        trial = study.ask()
        for epoch, accuracy in enumerate(curve, start=1):
            reason = asha.check(trial, epoch, [accuracy, macs])
            if reason is not None:
                stopped_at[name] = epoch
                assert reason.startswith(f"stopped by MO-ASHA after epoch {epoch}")
                break
        if name in stopped_at:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [curve[-1], macs])
    assert stopped_at == {"B": 1, "D": 3, "E": 1}
    trials = study.get_trials()
    assert rung_values(trials[0], 1) == [0.50, 100] and trials[0].user_attrs[ATTR_RUNGS]["3"]["promoted"]
    assert trials[1].user_attrs[ATTR_RUNGS] == {"1": {"values": [0.40, 120], "promoted": False}}
    assert trials[3].user_attrs[ATTR_RUNGS]["1"]["promoted"] and not trials[3].user_attrs[ATTR_RUNGS]["3"]["promoted"]
    assert "3" not in trials[4].user_attrs[ATTR_RUNGS]  # E never reached rung 3
    # Every decision follows from the record of the trials before it: what a worker that joins later reads.
    for trial in trials:
        for epoch, record in trial.user_attrs[ATTR_RUNGS].items():
            earlier = [rung_values(other, int(epoch)) for other in trials[:trial.number]]
            assert is_promoted(record["values"], [values for values in earlier if values is not None], DIRECTIONS,
                               3) is record["promoted"]


def test_a_cut_short_trial_is_left_out_of_its_rung():
    asha = MultiObjectiveAsha.from_settings(min_epochs=1, reduction_factor=3, epochs=3)
    study = optuna.create_study(directions=DIRECTIONS)
    killed = study.ask()
    assert asha.check(killed, 1, [0.9, 10]) is None
    study.tell(killed, state=optuna.trial.TrialState.FAIL)  # no fail reason: its worker died, a retry follows
    retry = study.ask()
    assert asha.check(retry, 1, [0.5, 50]) is None  # alone at its rung: the killed trial's record does not count


def test_mo_asha_settings_are_checked():
    with pytest.raises(SpecError, match="min_epochs.*must be below --epochs"):
        SearchConfig(pruner="mo-asha", epochs=3, min_epochs=3)
    with pytest.raises(SpecError, match="reduction_factor.*at least 2"):
        SearchConfig(pruner="mo-asha", epochs=3, reduction_factor=1)
    with pytest.raises(SpecError, match="reduction_factor.*sets the rungs of --pruner mo-asha"):
        SearchConfig(reduction_factor=2)
    with pytest.raises(SpecError, match="pruner.*must be one of auto, none, mo-asha"):
        SearchConfig(pruner="hyperband")
    with pytest.raises(SpecError, match="nothing trains"):
        SearchConfig(pruner="mo-asha", epochs=3, evaluator="zero-cost:synflow")
