"""The training loop: a few seeded epochs from scratch on an in-memory dataset (proxy training), or many
(``nasscale.evaluate.final``), scored by validation accuracy. The recipe is ``nasscale.evaluate.settings``.

Repeatable: with the same initial weights and settings the history is identical, because torch's global
seed is set before anything random, batches are drawn from a seeded generator and the thread count is fixed.
The initial weights are the caller's: build the model right after ``torch.manual_seed`` for repeatable trials.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasscale.errors import DataError, TrainingDiverged
from nasscale.evaluate.data import Dataset, stratified_indices
from nasscale.evaluate.settings import TrainSettings

SGD_MOMENTUM = 0.9
RECALIBRATION_BATCHES = 8
EVALUATION_BATCH_FACTOR = 4  # no gradients are kept, so evaluation batches can be larger
RESIZED_COPIES_PER_DATASET = 2  # one copy of Fashion-MNIST at 32 px is ~250 MB


@dataclass(frozen=True, slots=True)
class EpochRecord:
    epoch: int  # from 1
    train_loss: float  # mean over the epoch's images, label smoothing included
    validation_accuracy: float  # top-1, in [0, 1]
    seconds: float  # training and evaluation
    validation_loss: float = math.nan  # mean cross-entropy, no label smoothing


@dataclass(frozen=True, slots=True)
class TrainResult:
    validation_accuracy: float  # top-1 after the last epoch, in [0, 1]
    best_validation_accuracy: float
    history: tuple[EpochRecord, ...]
    train_seconds: float  # wall time of the whole call: preparation, training and evaluation
    train_images_per_second: float  # training steps only, evaluation excluded
    settings: TrainSettings


def train_model(model: nn.Module, train: Dataset, validation: Dataset, settings: TrainSettings, *,
                on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    """Train ``model`` in place and score it after every epoch.

    Raises ``TrainingDiverged`` when the loss or the validation outputs stop being finite, and
    ``DataError`` when the model does not fit the data. ``on_epoch`` runs after each epoch; whatever it
    raises (Optuna's pruning signal, say) ends training and propagates.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _train(model, train, validation, settings, on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


def _train(model: nn.Module, train: Dataset, validation: Dataset, settings: TrainSettings,
           on_epoch: Callable[[EpochRecord], None] | None) -> TrainResult:
    start = time.perf_counter()
    torch.manual_seed(settings.seed)
    _check_datasets(train, validation)
    device = torch.device(settings.device)
    train_images, train_labels = (tensor.to(device) for tensor in _train_tensors(train, settings))
    validation_images = _images_tensor(validation, settings.resolution).to(device)
    validation_labels = torch.from_numpy(validation.labels).to(device)
    model.to(device)
    _check_model(model, train, train_images)
    optimizer = _make_optimizer(model, settings)
    steps_per_epoch = _batch_count(len(train_labels), settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        _learning_rate_factor, total_steps=steps_per_epoch * settings.epochs,
        warmup_steps=round(settings.warmup_epochs * steps_per_epoch), schedule=settings.schedule))
    step = partial(_train_step, model=model, optimizer=optimizer, scheduler=scheduler,
                   loss_function=nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing))
    generator = torch.Generator().manual_seed(settings.seed)
    history: list[EpochRecord] = []
    training_seconds, images_trained = 0.0, 0
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        batches = _batches(len(train_labels), settings.batch_size, generator)
        losses = [step(train_images[batch], train_labels[batch], epoch=epoch, step=index) * len(batch)
                  for index, batch in enumerate(batches, start=1)]
        training_seconds += time.perf_counter() - epoch_start
        epoch_images = sum(len(batch) for batch in batches)
        images_trained += epoch_images
        _recalibrate_batch_norm(model, train_images, batches)
        accuracy, loss = _evaluate(model, validation_images, validation_labels,
                                   batch_size=settings.batch_size * EVALUATION_BATCH_FACTOR, epoch=epoch)
        record = EpochRecord(epoch, sum(losses) / epoch_images, accuracy, time.perf_counter() - epoch_start, loss)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return TrainResult(validation_accuracy=history[-1].validation_accuracy,
                       best_validation_accuracy=max(record.validation_accuracy for record in history),
                       history=tuple(history), train_seconds=time.perf_counter() - start,
                       train_images_per_second=images_trained / max(training_seconds, 1e-9), settings=settings)


def _train_step(images: torch.Tensor, labels: torch.Tensor, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, loss_function: nn.Module,
                epoch: int, step: int) -> float:
    loss = loss_function(model(images), labels)
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(f"training diverged: the loss is {value} at epoch {epoch}, step {step}; "
                               f"lower the learning rate (now {optimizer.param_groups[0]['lr']:.3g})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return value


def _recalibrate_batch_norm(model: nn.Module, images: torch.Tensor, batches: tuple[torch.Tensor, ...]) -> None:
    """Re-estimate BatchNorm statistics with the current weights before validating.

    After a few hundred steps the running averages still lag far behind the weights, so a short proxy
    run would be judged by stale statistics (near-chance accuracy) rather than by what it learned.
    Recalibrating on a few training batches is the usual remedy in NAS evaluation.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [module.momentum for module in norms]
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average over the recalibration batches
    model.train()
    with torch.no_grad():
        for batch in batches[:RECALIBRATION_BATCHES]:
            model(images[batch])
    for module, momentum in zip(norms, momenta, strict=True):
        module.momentum = momentum


def evaluate_model(model: nn.Module, dataset: Dataset, settings: TrainSettings) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of a trained model on ``dataset`` resized to ``settings.resolution``:
    final evaluation's one look at the test set."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        device = next(model.parameters()).device
        images = _resize(torch.from_numpy(np.ascontiguousarray(dataset.images)), settings.resolution).to(device)
        labels = torch.from_numpy(dataset.labels).to(device)
        return _evaluate(model, images, labels, batch_size=settings.batch_size * EVALUATION_BATCH_FACTOR,
                         epoch=settings.epochs)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int,
              epoch: int) -> tuple[float, float]:
    model.eval()
    correct, loss = 0, 0.0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            logits = model(images[start:start + batch_size])
            if not torch.isfinite(logits).all():  # weights broke on the epoch's last step
                raise TrainingDiverged(f"training diverged: the model outputs non-finite values on validation "
                                       f"after epoch {epoch}; lower the learning rate")
            batch_labels = labels[start:start + batch_size]
            correct += int((logits.argmax(1) == batch_labels).sum())
            loss += float(F.cross_entropy(logits, batch_labels, reduction="sum"))
    return correct / len(labels), loss / len(labels)


def _batch_count(count: int, batch_size: int) -> int:
    full, rest = divmod(count, batch_size)
    return full + (rest > 1 or full == 0)  # a lone trailing image is dropped: batch norm cannot train on one


def _batches(count: int, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    order = torch.randperm(count, generator=generator)
    return order.split(batch_size)[:_batch_count(count, batch_size)]


def _learning_rate_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * progress))


def _make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    groups = [{"params": [p for p in trainable if p.ndim > 1], "weight_decay": settings.weight_decay},
              {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}]
    groups = [group for group in groups if group["params"]]
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.learning_rate)
    return torch.optim.SGD(groups, lr=settings.learning_rate, momentum=SGD_MOMENTUM, nesterov=True)


# data -----------------------------------------------------------------------------------------------------------

# Resized images per dataset object, so that a study resizes once per resolution rather than once per trial.
_RESIZED: weakref.WeakKeyDictionary[Dataset, dict[int | None, torch.Tensor]] = weakref.WeakKeyDictionary()


def _images_tensor(dataset: Dataset, resolution: int | None) -> torch.Tensor:
    copies = _RESIZED.setdefault(dataset, {})
    if resolution not in copies:
        if len(copies) >= RESIZED_COPIES_PER_DATASET:
            copies.pop(next(iter(copies)))
        images = dataset.images if dataset.images.flags.writeable else dataset.images.copy()
        copies[resolution] = _resize(torch.from_numpy(np.ascontiguousarray(images)), resolution)
    return copies[resolution]


def _resize(images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    shrinking = resolution < max(images.shape[-2:])
    with torch.no_grad():  # not inference_mode: its tensors could not be saved for backward later
        return F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                             antialias=shrinking)


def _train_tensors(dataset: Dataset, settings: TrainSettings) -> tuple[torch.Tensor, torch.Tensor]:
    images = _images_tensor(dataset, settings.resolution)
    labels = torch.from_numpy(dataset.labels)
    if settings.max_train_samples is None or settings.max_train_samples >= len(dataset):
        return images, labels
    keep = torch.from_numpy(stratified_indices(dataset.labels, settings.max_train_samples, seed=settings.seed))
    return images[keep], labels[keep]


# checks ---------------------------------------------------------------------------------------------------------


def _check_datasets(train: Dataset, validation: Dataset) -> None:
    if len(train) == 0 or len(validation) == 0:
        raise DataError(f"nothing to train or score on: {len(train)} training and {len(validation)} "
                        f"validation images")
    if (train.in_channels, train.num_classes) != (validation.in_channels, validation.num_classes):
        raise DataError(f"training data {train.name} ({train.in_channels} channels, {train.num_classes} classes) "
                        f"and validation data {validation.name} ({validation.in_channels} channels, "
                        f"{validation.num_classes} classes) do not match")


def _check_model(model: nn.Module, dataset: Dataset, images: torch.Tensor) -> None:
    first_conv = next((module for module in model.modules() if isinstance(module, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != dataset.in_channels:
        raise DataError(f"{dataset.name} images have {dataset.in_channels} channel(s) but the model's first "
                        f"convolution takes {first_conv.in_channels}; build it with in_channels={dataset.in_channels}")
    model.eval()  # one image through, without touching batch-norm statistics
    with torch.inference_mode():
        outputs = model(images[:1])
    if tuple(outputs.shape) != (1, dataset.num_classes):
        raise DataError(f"the model outputs shape {tuple(outputs.shape)} for one image but {dataset.name} has "
                        f"{dataset.num_classes} classes; build it with num_classes={dataset.num_classes}")
