import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from nasscale.errors import DataError, SpecError, TrainingDiverged
from nasscale.evaluate.batches import TrainingBatches, images_at
from nasscale.evaluate.data import Dataset, load_splits
from nasscale.evaluate.optimization import learning_rate_factor
from nasscale.evaluate.settings import TrainSettings
from nasscale.evaluate.training import EpochRecord, train_model


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    return load_splits("digits", split_seed=0)


def small_cnn(in_channels: int = 1, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


class NaNAfter(nn.Module):
    """Passes its input through, then outputs NaN from the given training call on."""

    def __init__(self, calls: int):
        super().__init__()
        self.calls, self.remaining = calls, calls

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return inputs
        self.remaining -= 1
        return inputs * math.nan if self.remaining < 0 else inputs


def test_learns_digits_well_above_chance(digits) -> None:
    result = train_model(small_cnn(), *digits, TrainSettings(epochs=3))
    # Observed 0.228, 0.727, 0.797 (seed 0); chance is 0.1.
    assert result.validation_accuracy > 0.6
    assert result.best_validation_accuracy == max(record.validation_accuracy for record in result.history)
    assert [record.epoch for record in result.history] == [1, 2, 3]
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.train_images_per_second > 0 and result.train_seconds > 0
    assert result.settings == TrainSettings(epochs=3)


def test_same_seed_same_history(digits) -> None:
    settings = TrainSettings(epochs=2, max_train_samples=600)
    first = train_model(small_cnn(), *digits, settings)
    second = train_model(small_cnn(), *digits, settings)
    strip = [(record.train_loss, record.validation_accuracy) for record in first.history]
    assert strip == [(record.train_loss, record.validation_accuracy) for record in second.history]
    other = train_model(small_cnn(), *digits, TrainSettings(epochs=2, max_train_samples=600, seed=1))
    assert other.history[0].train_loss != first.history[0].train_loss


def test_nan_loss_raises_training_diverged(digits) -> None:
    model = nn.Sequential(small_cnn(), NaNAfter(calls=2))
    with pytest.raises(TrainingDiverged, match="epoch 1, step 3"):
        train_model(model, *digits, TrainSettings(epochs=1))


def test_huge_learning_rate_diverges(digits) -> None:
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        train_model(small_cnn(), *digits, TrainSettings(epochs=1, learning_rate=1e10))


def test_resolution_resizes_once(digits) -> None:
    model = small_cnn()
    seen: list[tuple[int, ...]] = []
    model[0].register_forward_hook(lambda module, inputs, output: seen.append(tuple(inputs[0].shape[-2:])))
    result = train_model(model, *digits, TrainSettings(epochs=1, resolution=16, max_train_samples=300))
    assert set(seen) == {(16, 16)} and 0 <= result.validation_accuracy <= 1
    assert images_at(digits[1], 16) is images_at(digits[1], 16)


def test_on_epoch_called_once_per_epoch(digits) -> None:
    records: list[EpochRecord] = []
    result = train_model(small_cnn(), *digits, TrainSettings(epochs=2, max_train_samples=300),
                         on_epoch=records.append)
    assert tuple(records) == result.history


def test_on_epoch_exception_propagates(digits) -> None:
    class Pruned(Exception):
        pass

    calls: list[int] = []

    def prune(record: EpochRecord) -> None:
        calls.append(record.epoch)
        raise Pruned

    with pytest.raises(Pruned):
        train_model(small_cnn(), *digits, TrainSettings(epochs=3, max_train_samples=300), on_epoch=prune)
    assert calls == [1]


def test_adamw_constant_with_warmup(digits) -> None:
    settings = TrainSettings(epochs=1, optimizer="adamw", learning_rate=1e-3, weight_decay=0.05,
                             schedule="constant", warmup_epochs=0.5, max_train_samples=300, threads=1)
    before = torch.get_num_threads()
    threads_seen: list[int] = []
    result = train_model(small_cnn(), *digits, settings,
                         on_epoch=lambda _: threads_seen.append(torch.get_num_threads()))
    assert 0 <= result.validation_accuracy <= 1
    assert threads_seen == [1] and torch.get_num_threads() == before  # set for training, then restored


def test_learning_rate_schedule() -> None:
    warm = partial(learning_rate_factor, settings=TrainSettings(epochs=2, warmup_epochs=0.4), steps_per_epoch=5)
    assert [warm(step) for step in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert warm(6) == pytest.approx(0.5)  # cosine, half way from the end of warm-up to step 10
    assert learning_rate_factor(9, settings=TrainSettings(epochs=2, schedule="constant"), steps_per_epoch=5) == 1.0
    decaying = TrainSettings(epochs=10, schedule="exponential", decay_rate=0.5, decay_epochs=2, warmup_epochs=1)
    # TF's staircase: halved every 2 epochs (10 steps) counted from the end of the 5 warm-up steps.
    assert [learning_rate_factor(step, settings=decaying, steps_per_epoch=5) for step in (4, 5, 14, 15, 35)] == \
        [1.0, 1.0, 1.0, 0.5, 0.125]


def test_batches_drop_a_lone_trailing_image() -> None:
    def sizes(count: int) -> list[int]:
        dataset = Dataset("blank", np.zeros((count, 1, 4, 4), np.float32), np.zeros(count, np.int64), 2, 1)
        batches = TrainingBatches(dataset, resolution=None, max_train_samples=None, seed=0, device=torch.device("cpu"))
        return [len(labels) for _, labels in batches.epoch(torch.Generator().manual_seed(0), 64, size=None)]

    assert sizes(129) == [64, 64] and sizes(130) == [64, 64, 2] and sizes(5) == [5]


def test_channel_mismatch_is_a_data_error(digits) -> None:
    with pytest.raises(DataError, match="in_channels=1"):
        train_model(small_cnn(in_channels=3), *digits, TrainSettings(epochs=1))


@pytest.mark.parametrize("changes", [
    {"epochs": 0}, {"batch_size": -1}, {"learning_rate": 0.0}, {"learning_rate": math.inf}, {"optimizer": "adam"},
    {"schedule": "step"}, {"label_smoothing": 1.0}, {"resolution": 0}, {"threads": 0}, {"warmup_epochs": 5},
    {"device": "tpu"},
])
def test_bad_settings_raise(changes: dict) -> None:
    with pytest.raises(SpecError, match=next(iter(changes))):
        TrainSettings(**changes)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error() -> None:
    with pytest.raises(SpecError, match="device: cuda asked for, but torch .* sees no CUDA GPU"):
        TrainSettings(device="cuda")


def test_explicit_cpu_device_trains_and_leaves_the_model_on_it(digits) -> None:
    model = small_cnn()
    train, validation = digits
    result = train_model(model, train, validation, TrainSettings(epochs=1, device="cpu"))
    assert result.validation_accuracy > 0.1
    assert all(parameter.device.type == "cpu" for parameter in model.parameters())

