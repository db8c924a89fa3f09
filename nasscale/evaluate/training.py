"""The training loop: a few seeded epochs from scratch (proxy training), or a recipe's full run
(``nasscale.evaluate.final``), scored by validation accuracy. The recipe is ``nasscale.evaluate.settings``; what
a step is made of (optimizer, schedule, loss, EMA) is ``optimization``, batch augmentation ``augment``, where the
batches come from ``batches``, the resumable state ``checkpoint``.

Repeatable: with the same initial weights and settings the history is identical, because torch's global
seed is set before anything random, batches are drawn from a seeded generator and the thread count is fixed.
The initial weights are the caller's: build the model right after ``torch.manual_seed`` for repeatable trials.
A run with a checkpoint saves after every epoch and, started again, resumes where it stopped with the same
random states, so it ends with the weights of a run that was never interrupted.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from functools import partial
from itertools import chain, islice

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from nasscale.errors import DataError, TrainingDiverged
from nasscale.evaluate.augment import StageAugmentation, stage_augmentation
from nasscale.evaluate.batches import RECALIBRATION_BATCHES, AnyDataset, Batch, TrainingBatches, evaluation_batches
from nasscale.evaluate.checkpoint import Checkpoint, random_states, restore_random_states
from nasscale.evaluate.optimization import learning_rate_factor, loss_value, make_ema, make_optimizer, set_dropout
from nasscale.evaluate.settings import TrainSettings

EVALUATION_BATCH_FACTOR = 4  # no gradients are kept, so evaluation batches can be larger
# FixRes's fine-tune at the test resolution (Touvron et al. 2019, section 5): batch norm and the classifier only,
# at a tenth of the run's learning rate, without augmentation.
FIXRES_LEARNING_RATE_FACTOR = 0.1


@dataclass(frozen=True, slots=True)
class EpochRecord:
    epoch: int  # from 1
    train_loss: float  # mean over the epoch's images, label smoothing included
    validation_accuracy: float  # top-1, in [0, 1]
    seconds: float  # training and evaluation
    validation_loss: float = math.nan  # mean cross-entropy, no label smoothing
    train_size: int | None = None  # the side of the training images this epoch (progressive learning grows it)


@dataclass(frozen=True, slots=True)
class TrainResult:
    validation_accuracy: float  # top-1 after the last epoch, in [0, 1]
    best_validation_accuracy: float
    history: tuple[EpochRecord, ...]
    train_seconds: float  # wall time of the whole call: preparation, training and evaluation
    train_images_per_second: float  # training steps only, evaluation excluded
    settings: TrainSettings
    resumed_epochs: int = 0  # epochs a checkpoint had already trained
    # The deployed model: the EMA of the weights where the recipe keeps one, else the trained model itself.
    deployed: nn.Module | None = None
    test_resolution_model: nn.Module | None = None  # FixRes: the deployed model fitted to settings.test_resolution
    test_resolution_accuracy: float | None = None  # validation accuracy at settings.test_resolution


def train_model(model: nn.Module, train: AnyDataset, validation: AnyDataset, settings: TrainSettings, *,
                on_epoch: Callable[[EpochRecord], None] | None = None, checkpoint: Checkpoint | None = None,
                workers: int = 0) -> TrainResult:
    """Train ``model`` in place and score it after every epoch.

    Raises ``TrainingDiverged`` when the loss or the validation outputs stop being finite, and
    ``DataError`` when the model does not fit the data. ``on_epoch`` runs after each epoch (and after the epoch's
    checkpoint is written); whatever it raises (Optuna's pruning signal, say) ends training and propagates.
    ``workers`` decode a streamed image folder (``nasscale.evaluate.streaming``). Under ``torchrun`` (a process
    group initialised) the model trains as ``DistributedDataParallel``, each process on its slice of every batch.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        run = _Run(model, train, validation, settings, checkpoint=checkpoint, workers=workers)
        return run.train(on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


class _Run:
    """One training run's state: what a checkpoint saves and restores."""

    def __init__(self, model: nn.Module, train: AnyDataset, validation: AnyDataset, settings: TrainSettings, *,
                 checkpoint: Checkpoint | None, workers: int) -> None:
        self.start = time.perf_counter()
        torch.manual_seed(settings.seed)
        _check_datasets(train, validation)
        self.settings, self.validation, self.workers, self.checkpoint = settings, validation, workers, checkpoint
        self.device = torch.device(settings.device)
        self.rank, world = _process_group()
        self.batches = TrainingBatches(train, resolution=settings.resolution, seed=settings.seed,
                                       max_train_samples=settings.max_train_samples, device=self.device,
                                       workers=workers, rank=self.rank, world=world)
        self.num_classes = train.num_classes
        self.model = model.to(self.device)
        _check_model(model, train, self.batches.first_image())
        self.network = _data_parallel(model, self.device) if world > 1 else model
        self.optimizer = make_optimizer(model, settings)
        steps_per_epoch = self.batches.steps_per_epoch(settings.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, partial(
            learning_rate_factor, settings=settings, steps_per_epoch=steps_per_epoch))
        self.ema: AveragedModel | None = make_ema(model, settings)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.history: list[EpochRecord] = []
        self.training_seconds, self.images_trained = 0.0, 0
        self.deployed: nn.Module | None = None  # the model scored after the last epoch
        self.augmentations: dict[int, StageAugmentation | None] = {}

    def train(self, on_epoch: Callable[[EpochRecord], None] | None) -> TrainResult:
        resumed = self._resume()
        for epoch in range(resumed + 1, self.settings.epochs + 1):
            record = self._epoch(epoch)
            self.history.append(record)
            self._save(epoch)
            if on_epoch is not None:
                on_epoch(record)
        deployed = self.deployed if self.deployed is not None else self._score_model()
        test_model, test_accuracy = None, None
        if self.settings.test_resolution is not None:
            test_model = self._fit_test_resolution(deployed)
            test_accuracy = self._validate(test_model, self.settings.test_resolution, self.settings.epochs)[0]
        history = tuple(self.history)
        return TrainResult(validation_accuracy=history[-1].validation_accuracy,
                           best_validation_accuracy=max(record.validation_accuracy for record in history),
                           history=history, train_seconds=time.perf_counter() - self.start,
                           train_images_per_second=self.images_trained / max(self.training_seconds, 1e-9),
                           settings=self.settings, resumed_epochs=resumed, deployed=deployed,
                           test_resolution_model=test_model, test_resolution_accuracy=test_accuracy)

    # ------------------------------------------------------------------------------------------- one epoch

    def _epoch(self, epoch: int) -> EpochRecord:
        epoch_start = time.perf_counter()
        size, augmentation = self._stage(epoch)
        self.network.train()
        total, count = 0.0, 0
        batches = self.batches.epoch(self.generator, self.settings.batch_size, size=size)
        for index, (images, labels) in enumerate(batches, start=1):
            total += self._step(images, labels, augmentation, epoch=epoch, step=index) * len(labels)
            count += len(labels)
        self.training_seconds += time.perf_counter() - epoch_start
        self.images_trained += count
        self.deployed = self._score_model()
        accuracy, loss = self._validate(self.deployed, self.settings.resolution, epoch)
        return EpochRecord(epoch, total / count, accuracy, time.perf_counter() - epoch_start, loss,
                           size or self.batches.native_size)

    def _stage(self, epoch: int) -> tuple[int | None, StageAugmentation | None]:
        """The epoch's training size and augmentation: the run's own, or progressive learning's stage."""
        settings, progressive = self.settings, self.settings.progressive
        if progressive is None:
            stage, size, magnitude, mixup = 0, settings.resolution, settings.magnitude, settings.mixup
        else:
            stage = progressive.stage_of(epoch, settings.epochs)
            size = progressive.size_at(stage, settings.resolution or self.batches.native_size)
            magnitude, mixup = progressive.value("magnitude", stage), progressive.value("mixup", stage)
            set_dropout(self.model, progressive.value("dropout", stage))
        if stage not in self.augmentations:
            self.augmentations[stage] = stage_augmentation(settings, self.num_classes, magnitude=magnitude,
                                                           mixup=mixup)
        return size, self.augmentations[stage]

    def _step(self, images: torch.Tensor, labels: torch.Tensor, augmentation: StageAugmentation | None, *,
              epoch: int, step: int) -> float:
        targets = labels
        if augmentation is not None:
            images, targets = augmentation(images, labels)
        loss = loss_value(self.network(images), targets, self.settings)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged: the loss is {value} at epoch {epoch}, step {step}; "
                                   f"lower the learning rate (now {self.optimizer.param_groups[0]['lr']:.3g})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return value

    def _score_model(self) -> nn.Module:
        """The model to score and deploy, its batch-norm statistics re-estimated on the epoch's first batches: the
        trained model itself, or a copy of the EMA (whose averaged statistics keep averaging)."""
        scored = self.model if self.ema is None else copy.deepcopy(self.ema.module)
        recalibrate_batch_norm(scored, self.batches.recalibration())
        return scored

    def _validate(self, model: nn.Module, resolution: int | None, epoch: int) -> tuple[float, float]:
        batches = evaluation_batches(self.validation, resolution=resolution, device=self.device,
                                     batch_size=self.settings.batch_size * EVALUATION_BATCH_FACTOR,
                                     workers=self.workers)
        return _evaluate(model, batches, epoch=epoch)

    # ------------------------------------------------------------------------------------- FixRes

    def _fit_test_resolution(self, deployed: nn.Module) -> nn.Module:
        """FixRes (Touvron et al. 2019): a copy of the deployed model for ``test_resolution``, its batch-norm
        statistics re-estimated there and, with ``fixres_epochs``, batch norm and the classifier fine-tuned there.
        Its batches come from a generator of its own, so a resumed run fits exactly as an uninterrupted one."""
        settings, size = self.settings, self.settings.test_resolution
        fitted = copy.deepcopy(deployed)
        generator = torch.Generator().manual_seed(settings.seed)
        if settings.fixres_epochs:
            _fine_tune_at(fitted, settings, lambda: self.batches.epoch(generator, settings.batch_size, size=size))
        first = self.batches.epoch(generator, settings.batch_size, size=size)
        recalibrate_batch_norm(fitted, (images for images, _ in first), RECALIBRATION_BATCHES)
        return fitted

    # ------------------------------------------------------------------------------------- checkpoints

    def _save(self, epoch: int) -> None:
        if self.checkpoint is None or self.rank != 0:  # one writer: the processes hold the same weights
            return
        self.checkpoint.save({
            "epoch": epoch, "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            # The scored EMA copy's re-estimated statistics: a run resumed after its last epoch deploys them.
            "deployed_buffers": None if self.ema is None or self.deployed is None else dict(
                self.deployed.named_buffers()),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "random": random_states(self.generator), "history": [asdict(record) for record in self.history],
            "training_seconds": self.training_seconds, "images_trained": self.images_trained,
        })

    def _resume(self) -> int:
        """The epochs a checkpoint of this run already trained (0 without one), its state restored."""
        state = None if self.checkpoint is None else self.checkpoint.load()
        if state is None:
            return 0
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        restore_random_states(state["random"], self.generator)
        self.history = [EpochRecord(**record) for record in state["history"]]
        self.training_seconds, self.images_trained = state["training_seconds"], state["images_trained"]
        if self.ema is None:
            self.deployed = self.model
        elif state["deployed_buffers"] is not None:
            self.deployed = copy.deepcopy(self.ema.module)
            self.deployed.load_state_dict(state["deployed_buffers"], strict=False)
        return int(state["epoch"])


def _fine_tune_at(model: nn.Module, settings: TrainSettings, epoch_batches: Callable[[], Iterable[Batch]]) -> None:
    """FixRes's fine-tune: only batch norm's affine parameters and the last linear layer (the classifier) learn,
    batch norm in training mode, for ``settings.fixres_epochs`` epochs at a constant, tenth learning rate."""
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    learning = {id(parameter) for module in norms + linears[-1:] for parameter in module.parameters()}
    frozen = [parameter for parameter in model.parameters() if id(parameter) not in learning]
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        tuning = replace(settings, learning_rate=settings.learning_rate * FIXRES_LEARNING_RATE_FACTOR,
                         schedule="constant", warmup_epochs=0.0)
        optimizer = make_optimizer(model, tuning)
        model.train()
        for epoch in range(settings.fixres_epochs):
            for images, labels in epoch_batches():
                loss = loss_value(model(images), labels, tuning)
                if not math.isfinite(loss.item()):
                    raise TrainingDiverged(f"FixRes fine-tuning diverged at epoch {epoch + 1}; lower the learning "
                                           f"rate (now {tuning.learning_rate:.3g})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)


def _process_group() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    # DDP averages the gradients of the processes' equal slices: the gradient of the whole batch's mean loss.
    # Its buffers (batch-norm statistics) follow rank 0's at each forward.
    device_ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor], count: int | None = None) -> None:
    """Re-estimate every BatchNorm's statistics as the plain average over ``batches`` (their first ``count``), the
    model's training mode kept.

    After a few hundred steps the running averages still lag far behind the weights, and a supernet's mix every
    sub-network's (Cai et al. 2020, section 3.4): a network scored with them would be judged by stale statistics
    (near-chance accuracy) rather than by what it learned. Recalibrating on a few training batches is the usual
    remedy in NAS evaluation.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    batches = iter(islice(batches, count))
    first = next(batches, None)
    if not norms or first is None:  # no batch: the statistics stay as they are rather than reset to none
        return
    momenta, training = [module.momentum for module in norms], model.training
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a cumulative average over the recalibration batches
    model.train()
    try:
        with torch.no_grad():
            for images in chain([first], batches):
                model(images)
    finally:
        for module, momentum in zip(norms, momenta, strict=True):
            module.momentum = momentum
        model.train(training)


def evaluate_model(model: nn.Module, dataset: AnyDataset, settings: TrainSettings, *, resolution: int | None = None,
                   workers: int = 0) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of a trained model on ``dataset`` resized to ``resolution`` (default
    ``settings.resolution``): final evaluation's one look at the test set."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        device = next(model.parameters()).device
        batches = evaluation_batches(dataset, resolution=resolution or settings.resolution, device=device,
                                     batch_size=settings.batch_size * EVALUATION_BATCH_FACTOR, workers=workers)
        return _evaluate(model, batches, epoch=settings.epochs)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(model: nn.Module, batches: Iterable[Batch], *, epoch: int) -> tuple[float, float]:
    model.eval()
    correct, loss, count = 0, 0.0, 0
    with torch.inference_mode():
        for images, labels in batches:
            logits = model(images)
            if not torch.isfinite(logits).all():  # weights broke on the epoch's last step
                raise TrainingDiverged(f"training diverged: the model outputs non-finite values on validation "
                                       f"after epoch {epoch}; lower the learning rate")
            correct += int((logits.argmax(1) == labels).sum())
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            count += len(labels)
    return correct / count, loss / count


# checks ---------------------------------------------------------------------------------------------------------


def _check_datasets(train: AnyDataset, validation: AnyDataset) -> None:
    if len(train) == 0 or len(validation) == 0:
        raise DataError(f"nothing to train or score on: {len(train)} training and {len(validation)} "
                        f"validation images")
    if (train.in_channels, train.num_classes) != (validation.in_channels, validation.num_classes):
        raise DataError(f"training data {train.name} ({train.in_channels} channels, {train.num_classes} classes) "
                        f"and validation data {validation.name} ({validation.in_channels} channels, "
                        f"{validation.num_classes} classes) do not match")


def _check_model(model: nn.Module, dataset: AnyDataset, image: torch.Tensor) -> None:
    first_conv = next((module for module in model.modules() if isinstance(module, nn.Conv2d)), None)
    if first_conv is not None and first_conv.in_channels != dataset.in_channels:
        raise DataError(f"{dataset.name} images have {dataset.in_channels} channel(s) but the model's first "
                        f"convolution takes {first_conv.in_channels}; build it with in_channels={dataset.in_channels}")
    model.eval()  # one image through, without touching batch-norm statistics
    with torch.inference_mode():
        outputs = model(image)
    if tuple(outputs.shape) != (1, dataset.num_classes):
        raise DataError(f"the model outputs shape {tuple(outputs.shape)} for one image but {dataset.name} has "
                        f"{dataset.num_classes} classes; build it with num_classes={dataset.num_classes}")
