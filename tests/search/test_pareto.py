"""Pareto fronts and hypervolume: known fronts, ties, hand-computed areas, reference handling, brute force."""

import enum
import itertools
import random
import subprocess
import sys

import pytest

from nasscale.search.pareto import dominates, hypervolume_2d, hypervolume_over_trials, pareto_front

ACC_MACS = ("maximize", "minimize")


# ----------------------------------------------------------------------------------------------- fronts


def test_known_front_accuracy_macs():
    points = [(0.90, 300), (0.85, 100), (0.80, 200), (0.95, 900), (0.70, 50), (0.60, 400)]
    # (0.80, 200) is beaten by (0.85, 100); (0.60, 400) by several; the rest trade accuracy for MACs.
    assert pareto_front(points, ACC_MACS) == [0, 1, 3, 4]


def test_dominated_points_are_removed_whatever_the_order():
    points = [(0.5, 500), (0.9, 100), (0.8, 200), (0.9, 150)]
    assert pareto_front(points, ACC_MACS) == [1]
    assert pareto_front(list(reversed(points)), ACC_MACS) == [2]


def test_ties():
    # Equal points do not dominate each other: both stay.
    assert pareto_front([(0.8, 100), (0.8, 100)], ACC_MACS) == [0, 1]
    # Tied in one objective, worse in the other: dominated.
    assert pareto_front([(0.8, 100), (0.8, 200)], ACC_MACS) == [0]
    assert pareto_front([(0.7, 100), (0.8, 100)], ACC_MACS) == [1]
    assert not dominates((0.8, 100), (0.8, 100), ACC_MACS)
    assert dominates((0.8, 100), (0.8, 200), ACC_MACS)
    assert not dominates((0.8, 200), (0.8, 100), ACC_MACS)


def test_empty_and_single():
    assert pareto_front([], ACC_MACS) == []
    assert pareto_front([(0.1, 5)], ACC_MACS) == [0]


def test_one_objective_front_is_the_best_values():
    assert pareto_front([(3,), (1,), (2,), (1,)], ["minimize"]) == [1, 3]
    assert pareto_front([(3,), (1,), (3,)], ["maximize"]) == [0, 2]


def test_three_objectives():
    directions = ["maximize", "minimize", "minimize"]  # accuracy, MACs, params
    points = [(0.9, 100, 10), (0.9, 100, 20), (0.8, 50, 30), (0.95, 200, 5), (0.8, 60, 30)]
    assert pareto_front(points, directions) == [0, 2, 3]


def test_front_matches_the_definition_on_random_points():
    rng = random.Random(7)
    for objectives in (1, 2, 3, 4):
        directions = [rng.choice(["maximize", "minimize"]) for _ in range(objectives)]
        for _ in range(30):
            points = [tuple(rng.randint(0, 5) for _ in range(objectives)) for _ in range(rng.randint(0, 25))]
            expected = [i for i, p in enumerate(points)
                        if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)]
            assert pareto_front(points, directions) == expected


def test_study_direction_like_objects_are_accepted():
    class StudyDirection(enum.IntEnum):  # the shape of optuna.study.StudyDirection
        NOT_SET = 0
        MINIMIZE = 1
        MAXIMIZE = 2

    directions = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    assert pareto_front([(0.8, 200), (0.9, 100)], directions) == [1]
    assert hypervolume_2d([(0.5, 0.5)], directions, (0, 1)) == pytest.approx(0.25)
    assert pareto_front([(0.8, 200)], ["MAXIMIZE", " Minimize "]) == [0]
    with pytest.raises(ValueError, match="unknown direction"):
        pareto_front([(1, 2)], [StudyDirection.NOT_SET, StudyDirection.MINIMIZE])


@pytest.mark.parametrize(("points", "directions", "message"), [
    ([(1, 2)], ["maximize"], "2 values but there are 1 directions"),
    ([(1,)], ACC_MACS, "1 values but there are 2 directions"),
    ([(float("nan"), 2)], ACC_MACS, "finite"),
    ([(None, 2)], ACC_MACS, "finite"),
    ([(True, 2)], ACC_MACS, "finite"),
    ([(1, 2)], ["maximise", "minimize"], "unknown direction"),
    ([(1, 2)], "maximize", "sequence"),
    ([(1, 2)], [], "empty"),
])
def test_bad_input_is_refused(points, directions, message):
    with pytest.raises(ValueError, match=message):
        pareto_front(points, directions)


# ----------------------------------------------------------------------------------------------- hypervolume


def test_hypervolume_of_one_point_is_its_box():
    assert hypervolume_2d([(0.8, 0.5)], ACC_MACS, (0, 1)) == pytest.approx(0.8 * 0.5)


def test_hypervolume_hand_computed_staircase():
    # Boxes [0, 0.6] x [0.2, 1] and [0, 0.9] x [0.6, 1]: 0.6 * 0.8 + (0.9 - 0.6) * 0.4 = 0.60.
    assert hypervolume_2d([(0.6, 0.2), (0.9, 0.6)], ACC_MACS, (0, 1)) == pytest.approx(0.60)
    # Both minimised, a staircase of unit cells: 3 + 2 + 1.
    assert hypervolume_2d([(1, 3), (2, 2), (3, 1)], ["minimize", "minimize"], (4, 4)) == pytest.approx(6)
    # Both maximised, the mirror image.
    assert hypervolume_2d([(3, 1), (2, 2), (1, 3)], ["maximize", "maximize"], (0, 0)) == pytest.approx(6)


def test_dominated_and_duplicate_points_add_nothing():
    front = [(0.6, 0.2), (0.9, 0.6)]
    extra = [(0.5, 0.3), (0.9, 0.7), (0.6, 0.2), (0.1, 0.9)]
    assert hypervolume_2d(front + extra, ACC_MACS, (0, 1)) == pytest.approx(0.60)
    assert hypervolume_2d(extra + front, ACC_MACS, (0, 1)) == pytest.approx(0.60)


def test_reference_point_handling():
    points = [(0.6, 0.2), (0.9, 0.6)]
    # A tighter reference clips the boxes: [0.5, 0.6] x [0.2, 0.8] and [0.5, 0.9] x [0.6, 0.8].
    assert hypervolume_2d(points, ACC_MACS, (0.5, 0.8)) == pytest.approx(0.1 * 0.6 + 0.3 * 0.2)
    # Points beyond the reference in either objective, or on it, add nothing.
    assert hypervolume_2d([(0.9, 1.5)], ACC_MACS, (0, 1)) == 0.0
    assert hypervolume_2d([(-0.1, 0.5)], ACC_MACS, (0, 1)) == 0.0
    assert hypervolume_2d([(0.0, 0.5), (0.5, 1.0)], ACC_MACS, (0, 1)) == 0.0
    assert hypervolume_2d([(0.9, 1.5), (0.5, 0.5)], ACC_MACS, (0, 1)) == pytest.approx(0.25)
    assert hypervolume_2d([], ACC_MACS, (0, 1)) == 0.0


def test_normalised_accuracy_macs_hypervolume_lies_in_unit_interval():
    rng = random.Random(3)
    max_macs = 5_000_000
    points = [(rng.random(), rng.randint(1, max_macs) / max_macs) for _ in range(200)]
    volume = hypervolume_2d(points, ACC_MACS, (0, 1))
    assert 0 < volume < 1
    assert hypervolume_2d([(1.0, 0.0)], ACC_MACS, (0, 1)) == pytest.approx(1.0)


def _grid_area(points, reference):
    """Brute force for both-minimised integer points: count the unit cells some point dominates."""
    cells = 0
    for x, y in itertools.product(range(min(reference[0], 0), reference[0]),
                                  range(min(reference[1], 0), reference[1])):
        cells += any(px <= x and py <= y for px, py in points)
    return cells


def test_hypervolume_matches_brute_force_on_random_points():
    rng = random.Random(11)
    for _ in range(50):
        points = [(rng.randint(0, 12), rng.randint(0, 12)) for _ in range(rng.randint(0, 15))]
        reference = (rng.randint(5, 12), rng.randint(5, 12))
        assert hypervolume_2d(points, ["minimize", "minimize"], reference) == pytest.approx(
            _grid_area(points, reference))


def test_hypervolume_needs_two_objectives():
    with pytest.raises(ValueError, match="exactly 2 objectives"):
        hypervolume_2d([(1, 2, 3)], ["minimize"] * 3, (4, 4, 4))
    with pytest.raises(ValueError, match="exactly 2 objectives"):
        hypervolume_over_trials([(1,)], ["minimize"], (4,))
    with pytest.raises(ValueError, match="reference"):
        hypervolume_2d([(1, 2)], ACC_MACS, (0, float("inf")))


# ----------------------------------------------------------------------------------------------- over trials


def test_hypervolume_over_trials_hand_computed():
    trials = [(0.5, 0.5), None, (0.4, 0.6), (0.6, 0.2), (0.9, 0.6), (0.6, 0.2)]
    running = hypervolume_over_trials(trials, ACC_MACS, (0, 1))
    assert running == pytest.approx([0.25, 0.25, 0.25, 0.48, 0.60, 0.60])


def test_hypervolume_over_trials_matches_prefixes_and_never_drops():
    rng = random.Random(5)
    trials = [None if rng.random() < 0.15 else (rng.random(), rng.random() * 1.2) for _ in range(120)]
    running = hypervolume_over_trials(trials, ACC_MACS, (0, 1))
    assert len(running) == len(trials)
    for count in (1, 7, 40, 120):
        prefix = [trial for trial in trials[:count] if trial is not None]
        assert running[count - 1] == pytest.approx(hypervolume_2d(prefix, ACC_MACS, (0, 1)))
    assert all(later >= earlier for earlier, later in itertools.pairwise(running))
    assert hypervolume_over_trials([], ACC_MACS, (0, 1)) == []
    assert hypervolume_over_trials([None, None], ACC_MACS, (0, 1)) == [0.0, 0.0]


def test_light_import():
    code = ("import sys, nasscale.search.pareto; heavy = {'torch', 'numpy', 'optuna'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
