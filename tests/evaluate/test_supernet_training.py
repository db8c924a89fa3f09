"""Supernet training: progressive shrinking's phases vary only their fields, each step is the sandwich rule, a
stopped run resumes to the weights of one never stopped, and sub-networks are scored recalibrated."""

from __future__ import annotations

import random

import pytest
import torch

from nasscale.errors import DataError, SpecError
from nasscale.evaluate.data import load_splits
from nasscale.evaluate.settings import TrainSettings
from nasscale.evaluate.supernet_training import (
    ShrinkPhase,
    SupernetSettings,
    evaluate_subnet,
    progressive_shrinking,
    sandwich,
    supernet_checkpoint,
    supernet_choices,
    train_supernet,
)
from nasscale.evaluate.training import recalibrate_batch_norm
from nasscale.models.supernet import ELASTIC_FIELDS, STAGE_CHOICE_FIELDS, Supernet
from nasscale.space.parsing import load_space

RECIPE = TrainSettings(batch_size=32, learning_rate=0.05, max_train_samples=128, seed=3)
# Two epochs: the largest alone, then everything elastic (with its channel sort and fresh optimizer state).
SETTINGS = SupernetSettings(phases=progressive_shrinking(1, 0, 0, 1), random_subnets=1, train=RECIPE)
# Two epochs of one phase, so the second goes on with the first's optimizer state.
ONE_PHASE = SupernetSettings(phases=(ShrinkPhase(name="all", epochs=2, elastic=ELASTIC_FIELDS),), random_subnets=1,
                             train=RECIPE)


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_splits("digits", split_seed=0, max_validation_samples=64)


def _supernet() -> Supernet:
    torch.manual_seed(0)
    return Supernet(supernet_choices(load_space("tiny"), in_channels=1, num_classes=10))


def _run(digits, checkpoint_dir, settings: SupernetSettings, *, stop_after: int | None = None):
    supernet = _supernet()
    checkpoint = None if checkpoint_dir is None else supernet_checkpoint(checkpoint_dir, supernet, settings,
                                                                         data="digits")

    def on_epoch(record) -> None:
        if record.epoch == stop_after:
            raise Stop

    return supernet, train_supernet(supernet, *digits, settings, on_epoch=on_epoch, checkpoint=checkpoint)


@pytest.mark.parametrize("settings", [SETTINGS, ONE_PHASE], ids=["two-phases", "one-phase"])
def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(digits, tmp_path, settings):
    uninterrupted, expected = _run(digits, None, settings)
    with pytest.raises(Stop):
        _run(digits, tmp_path, settings, stop_after=1)
    resumed, result = _run(digits, tmp_path, settings)
    assert result.resumed_epochs == 1
    assert [record.phase for record in result.history] == [settings.phase_at(epoch)[0].name for epoch in (1, 2)]
    weights = uninterrupted.state_dict()
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, weights[name]), name
    strip = [(record.train_loss, record.largest_accuracy, record.smallest_accuracy) for record in result.history]
    assert strip == [(record.train_loss, record.largest_accuracy, record.smallest_accuracy)
                     for record in expected.history]
    assert expected.history[-1].largest_accuracy > 0.2  # it learned something in two short epochs


def test_a_checkpoint_of_another_run_is_refused(digits, tmp_path):
    supernet = _supernet()
    supernet_checkpoint(tmp_path, supernet, SETTINGS, data="digits").save({"epoch": 1})
    other = SupernetSettings(phases=SETTINGS.phases, random_subnets=2, train=RECIPE)
    with pytest.raises(DataError, match="another run"):
        train_supernet(supernet, *digits, other, checkpoint=supernet_checkpoint(tmp_path, supernet, other,
                                                                                data="digits"))


@pytest.mark.parametrize("phase", progressive_shrinking(), ids=lambda phase: phase.name)
def test_each_phase_varies_only_its_fields_in_a_sandwich(phase):
    supernet = _supernet()
    subnets = supernet.subnets
    largest, students = sandwich(supernet, phase, 4, random.Random(0))
    assert largest == subnets.largest(phase.elastic)
    fixed = [name for name in ("block", *STAGE_CHOICE_FIELDS) if name not in phase.elastic]
    for arch in (largest, *students):
        subnets.check(arch)
        for stage, reference in zip(arch.stages, subnets.reference.stages, strict=True):
            assert all(getattr(stage, name) == getattr(reference, name) for name in fixed)
        for name in ("resolution", "stem_channels", "head_channels"):
            assert name in phase.elastic or getattr(arch, name) == getattr(subnets.reference, name)
    if phase.elastic:
        assert students[0] == subnets.smallest(phase.elastic) and largest not in students
    else:
        assert largest == subnets.reference and students == []
    if phase.name == "expansion":
        assert largest == subnets.reference and students[0] == subnets.smallest()


def test_settings_are_checked_in_one_line():
    with pytest.raises(SpecError, match="unknown field 'width'"):
        ShrinkPhase(name="wide", epochs=1, elastic=("width",))
    with pytest.raises(SpecError) as caught:
        SupernetSettings(train=TrainSettings(mixup=0.2))
    assert caught.value.path == "train.mixup"
    with pytest.raises(SpecError, match="at least one epoch"):
        SupernetSettings(phases=progressive_shrinking(0, 0, 0, 0))
    assert SupernetSettings().epochs == 4 and set(progressive_shrinking()[-1].elastic) == set(ELASTIC_FIELDS)


def test_a_subnetwork_is_scored_with_its_own_batch_norm_statistics(digits):
    supernet = _supernet()
    arch = supernet.subnets.smallest()
    train, validation = digits
    score = evaluate_subnet(supernet, arch, train, validation, settings=RECIPE, count=2)
    assert 0.0 <= score <= 1.0
    assert evaluate_subnet(supernet, arch, train, validation, settings=RECIPE, count=2) == score
    norm = supernet.stem.norm
    assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))  # the supernet's are untouched

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(2, momentum=0.3)).eval()
    batches = [torch.randn(4, 2, 3, 3) + 5.0, torch.randn(4, 2, 3, 3) - 5.0, torch.randn(4, 2, 3, 3) + 100.0]
    recalibrate_batch_norm(model, iter(batches), 2)
    expected = torch.cat(batches[:2]).mean(dim=(0, 2, 3))
    torch.testing.assert_close(model[0].running_mean, expected, rtol=0, atol=1e-5)
    assert model[0].momentum == 0.3 and not model.training  # momentum and mode as they were
    recalibrate_batch_norm(model, iter([]), 2)  # no batch: the statistics are kept, not reset
    torch.testing.assert_close(model[0].running_mean, expected, rtol=0, atol=1e-5)
