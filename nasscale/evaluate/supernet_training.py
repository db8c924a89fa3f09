"""Training a weight-sharing supernet (``nasscale.models.supernet``) and scoring its sub-networks.

``supernet_choices(space)`` lists what a search space's stages may be, so that ``Supernet(supernet_choices(space))``
holds every architecture the space samples and no other.

``train_supernet`` runs progressive shrinking (Cai et al. 2020, section 3.3): phases of epochs, each letting more
fields vary: the largest network alone, then elastic kernel (and resolution, which OFA varies throughout), then
depth, then expansion and width. The last phase also frees what OFA has no counterpart for (block type,
squeeze-excite, skip, activation), so it trains the whole space. Each step follows the sandwich rule with in-place
distillation (Yu et al. 2020, BigNAS): the phase's largest, smallest and ``random_subnets`` random sub-networks each
take the batch at their own resolution; the largest learns from the labels, the others from its soft outputs; one
optimizer step on the summed gradients. A phase starts with fresh optimizer state, as OFA starts each anew, and,
where it varies widths, with ``sort_channels``. The learning-rate schedule restarts per phase as well.

Resumable: a checkpoint after every epoch holds the weights, the optimizer, the random states and the history; the
sub-networks of a step are drawn from a generator seeded by (seed, epoch, step), so a resumed run draws what the
uninterrupted one would and ends with its weights.

A sub-network is scored by ``evaluate_subnet``: extracted, its batch-norm statistics recalibrated on training
batches (shared statistics suit no sub-network), then evaluated on validation.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from nasscale.errors import DataError, SpecError, TrainingDiverged
from nasscale.evaluate.batches import RECALIBRATION_BATCHES, AnyDataset, TrainingBatches, resize
from nasscale.evaluate.checkpoint import CHECKPOINT_FILE, Checkpoint, random_states, restore_random_states
from nasscale.evaluate.optimization import learning_rate_factor, loss_value, make_optimizer
from nasscale.evaluate.settings import TrainSettings
from nasscale.evaluate.training import evaluate_model, recalibrate_batch_norm
from nasscale.models.supernet import (
    ELASTIC_FIELDS,
    SHARED_FIELDS,
    StageChoices,
    Supernet,
    SupernetChoices,
    VariantChoices,
    extract,
    sort_channels,
)
from nasscale.space.domains import distinct_integer_values, distinct_values
from nasscale.space.model import SearchSpace, StageSpace, canonical_activation
from nasscale.spec.arch import ARCH_DEFAULTS, Arch
from nasscale.spec.vocabulary import Activation

# ---------------------------------------------------------------------------------------------------
# A space's choices


def supernet_choices(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000) -> SupernetChoices:
    """What every stage of ``space`` may be, listed; a ``SpecError`` for a space a supernet cannot hold."""
    if space.regnet is not None:
        raise SpecError("stages", f"{space.name}: a RegNet space's stages come from a rule, not choices a supernet "
                                  f"can share weights across")
    stages = tuple(StageChoices(stride=stage.stride, variants=_variants(stage, space.activation))
                   for stage in space.stages)
    fields = ARCH_DEFAULTS | space.arch_fields() | {"in_channels": in_channels, "num_classes": num_classes}
    return SupernetChoices(stages=stages, resolution=distinct_integer_values(space.resolution),
                           stem_channels=distinct_integer_values(space.stem_channels),
                           head_channels=distinct_integer_values(space.head_channels),
                           shared=tuple((name, fields[name]) for name in SHARED_FIELDS))


def _variants(stage: StageSpace, activation: Activation | None) -> tuple[VariantChoices, ...]:
    variants = []
    for variant in stage.block:
        values = []
        for name, domain in stage.field_domains(variant, activation).items():
            choices = distinct_values(domain)
            if name == "activation":
                choices = tuple(Activation(canonical_activation(value)) for value in choices)
            values.append((name, choices))
        variants.append(VariantChoices(block=variant.block, values=tuple(values)))
    return tuple(variants)


# ---------------------------------------------------------------------------------------------------
# Settings: progressive shrinking's phases and the sandwich rule


@dataclass(frozen=True, slots=True, kw_only=True)
class ShrinkPhase:
    """``epochs`` of training in which the fields ``elastic`` names vary (the others keep the largest's)."""

    name: str
    epochs: int
    elastic: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 0:
            raise SpecError(f"phases.{self.name}.epochs", f"must be a whole number of epochs, got {self.epochs!r}")
        unknown = [name for name in self.elastic if name not in ELASTIC_FIELDS]
        if unknown:
            raise SpecError(f"phases.{self.name}.elastic", f"unknown field {unknown[0]!r}; the elastic fields are "
                                                           f"{', '.join(ELASTIC_FIELDS)}")

    @property
    def varies_width(self) -> bool:
        return any(name in self.elastic for name in WIDTH_FIELDS)


KERNEL_FIELDS = ("resolution", "kernel_size")
DEPTH_FIELDS = (*KERNEL_FIELDS, "num_blocks")
WIDTH_FIELDS = ("expand_ratio", "out_channels", "stem_channels", "head_channels")


def progressive_shrinking(largest: int = 1, kernel: int = 1, depth: int = 1, expansion: int = 1) \
        -> tuple[ShrinkPhase, ...]:
    """OFA's schedule, ``epochs`` per phase: the largest, elastic kernel, depth, then expansion (everything)."""
    return (ShrinkPhase(name="largest", epochs=largest, elastic=()),
            ShrinkPhase(name="kernel", epochs=kernel, elastic=KERNEL_FIELDS),
            ShrinkPhase(name="depth", epochs=depth, elastic=DEPTH_FIELDS),
            ShrinkPhase(name="expansion", epochs=expansion, elastic=ELASTIC_FIELDS))


# TrainSettings fields supernet training does not apply: refused when set, rather than silently ignored.
UNSUPPORTED_SETTINGS = ("augment", "random_erasing", "mixup", "cutmix", "ema_decay", "dropout", "drop_path_rate",
                        "progressive", "test_resolution", "resolution")


@dataclass(frozen=True, slots=True, kw_only=True)
class SupernetSettings:
    """The phases, the sandwich's ``random_subnets`` besides the largest and the smallest, and the step's recipe
    (``train``: optimizer, learning rate and its schedule per phase, batch size, seed, label smoothing; its
    ``epochs`` are the phases'). ``recalibration_batches`` re-estimate batch norm before scoring a sub-network."""

    phases: tuple[ShrinkPhase, ...] = field(default_factory=progressive_shrinking)
    random_subnets: int = 2
    train: TrainSettings = field(default_factory=TrainSettings)
    recalibration_batches: int = RECALIBRATION_BATCHES

    def __post_init__(self) -> None:
        if not self.phases or self.epochs < 1:
            raise SpecError("phases", "must train at least one epoch")
        for name, minimum in (("random_subnets", 0), ("recalibration_batches", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise SpecError(name, f"must be a whole number of at least {minimum}, got {value!r}")
        shortest = min(phase.epochs for phase in self.phases if phase.epochs)
        if self.train.warmup_epochs > shortest:
            raise SpecError("train.warmup_epochs", f"each phase warms up anew: at most the shortest phase's "
                                                   f"{shortest} epoch(s), got {self.train.warmup_epochs:g}")
        defaults = TrainSettings()
        for name in UNSUPPORTED_SETTINGS:
            if getattr(self.train, name) != getattr(defaults, name):
                raise SpecError(f"train.{name}", f"supernet training does not apply it; leave it at "
                                                 f"{getattr(defaults, name)!r}")

    @property
    def epochs(self) -> int:
        return sum(phase.epochs for phase in self.phases)

    def phase_at(self, epoch: int) -> tuple[ShrinkPhase, int]:
        """The phase of run epoch ``epoch`` (from 1) and the epoch within it (from 1)."""
        for phase in self.phases:
            if epoch <= phase.epochs:
                return phase, epoch
            epoch -= phase.epochs
        raise ValueError(f"epoch past the last phase by {epoch}")


def supernet_checkpoint(out_dir: str | Path, supernet: Supernet, settings: SupernetSettings, *, data: str,
                        split_seed: int = 0) -> Checkpoint:
    """The checkpoint of one supernet run: its choices, data and settings (the thread count and device may change)."""
    train = {key: value for key, value in asdict(settings.train).items() if key not in ("threads", "device")}
    fields = {"phases": [asdict(phase) for phase in settings.phases], "random_subnets": settings.random_subnets,
              "recalibration_batches": settings.recalibration_batches, "train": train}
    identity = {"arch_id": supernet.choices.identity, "data": data, "split_seed": split_seed,
                "settings": json.loads(json.dumps(fields, default=str))}
    return Checkpoint(Path(out_dir) / CHECKPOINT_FILE, identity)


# ---------------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True, slots=True)
class SupernetEpoch:
    epoch: int  # from 1, over the whole run
    phase: str
    train_loss: float  # the largest sub-network's mean over the epoch, label smoothing included
    largest_accuracy: float  # validation top-1 of the phase's largest and smallest, recalibrated
    smallest_accuracy: float
    seconds: float


@dataclass(frozen=True, slots=True)
class SupernetResult:
    history: tuple[SupernetEpoch, ...]
    resumed_epochs: int  # epochs a checkpoint had already trained
    train_seconds: float


def train_supernet(supernet: Supernet, train: AnyDataset, validation: AnyDataset, settings: SupernetSettings, *,
                   on_epoch: Callable[[SupernetEpoch], None] | None = None,
                   checkpoint: Checkpoint | None = None) -> SupernetResult:
    """Train ``supernet`` in place. ``on_epoch`` runs after each epoch's checkpoint is written; what it raises ends
    training and propagates (a run stopped so resumes from that checkpoint)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.train.threads)
    try:
        return _SupernetRun(supernet, train, validation, settings, checkpoint).train(on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


class _SupernetRun:
    """One run's state: what a checkpoint saves and restores."""

    def __init__(self, supernet: Supernet, train: AnyDataset, validation: AnyDataset, settings: SupernetSettings,
                 checkpoint: Checkpoint | None) -> None:
        self.start = time.perf_counter()
        recipe = settings.train
        torch.manual_seed(recipe.seed)
        _check_data(supernet, train, validation)
        self.supernet, self.validation, self.settings, self.checkpoint = supernet, validation, settings, checkpoint
        self.device = torch.device(recipe.device)
        supernet.to(self.device)
        # The images' own size: each sub-network resizes a batch to its resolution.
        self.batches = TrainingBatches(train, resolution=None, seed=recipe.seed,
                                       max_train_samples=recipe.max_train_samples, device=self.device)
        self.steps_per_epoch = self.batches.steps_per_epoch(recipe.batch_size)
        self.optimizer = make_optimizer(supernet, recipe)
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.history: list[SupernetEpoch] = []

    def train(self, on_epoch: Callable[[SupernetEpoch], None] | None) -> SupernetResult:
        resumed = self._resume()
        for epoch in range(resumed + 1, self.settings.epochs + 1):
            phase, phase_epoch = self.settings.phase_at(epoch)
            if phase_epoch == 1:
                self._start_phase(phase)
            self.history.append(self._epoch(epoch, phase, phase_epoch))
            self._save(epoch)
            if on_epoch is not None:
                on_epoch(self.history[-1])
        return SupernetResult(tuple(self.history), resumed, time.perf_counter() - self.start)

    def _start_phase(self, phase: ShrinkPhase) -> None:
        if phase.varies_width:
            sort_channels(self.supernet)
        self.optimizer.state.clear()  # momenta of the previous phase, and of channels now elsewhere

    def _epoch(self, epoch: int, phase: ShrinkPhase, phase_epoch: int) -> SupernetEpoch:
        epoch_start = time.perf_counter()
        self.supernet.train()
        total, count = 0.0, 0
        batches = self.batches.epoch(self.generator, self.settings.train.batch_size, size=None)
        schedule = replace(self.settings.train, epochs=phase.epochs)  # each phase warms up and decays anew, as OFA's
        for step, (images, labels) in enumerate(batches, start=1):
            self._set_learning_rate(schedule, (phase_epoch - 1) * self.steps_per_epoch + step - 1)
            total += self._step(images, labels, phase, epoch=epoch, step=step) * len(labels)
            count += len(labels)
        subnets = self.supernet.subnets
        with torch.random.fork_rng(devices=[]):  # scoring leaves training's randomness as it was
            recalibration = self.batches.recalibration()
            largest = self._score(subnets.largest(phase.elastic), recalibration)
            smallest = self._score(subnets.smallest(phase.elastic), recalibration)
        return SupernetEpoch(epoch, phase.name, total / count, largest, smallest, time.perf_counter() - epoch_start)

    def _set_learning_rate(self, schedule: TrainSettings, step: int) -> None:
        factor = learning_rate_factor(step, settings=schedule, steps_per_epoch=self.steps_per_epoch)
        rate = schedule.learning_rate * factor
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def _step(self, images: torch.Tensor, labels: torch.Tensor, phase: ShrinkPhase, *, epoch: int, step: int) -> float:
        recipe, supernet = self.settings.train, self.supernet
        largest, students = sandwich(supernet, phase, self.settings.random_subnets,
                                     random.Random(f"{recipe.seed}:{epoch}:{step}"))
        self.optimizer.zero_grad(set_to_none=True)
        with supernet.activated(largest):
            teacher = supernet(resize(images, largest.resolution))
        loss = loss_value(teacher, labels, recipe)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(f"supernet training diverged: the loss is {value} at epoch {epoch}, step {step}; "
                                   f"lower the learning rate (now {self.optimizer.param_groups[0]['lr']:.3g})")
        loss.backward()
        targets = F.softmax(teacher.detach(), dim=1)  # in-place distillation: the largest teaches the rest
        for arch in students:
            with supernet.activated(arch):
                loss_value(supernet(resize(images, arch.resolution)), targets, recipe).backward()
        self.optimizer.step()
        return value

    def _score(self, arch: Arch, recalibration: list[torch.Tensor]) -> float:
        model = extract(self.supernet, arch)
        recalibrate_batch_norm(model, (resize(images, arch.resolution) for images in recalibration),
                               self.settings.recalibration_batches)
        return evaluate_model(model, self.validation, self.settings.train, resolution=arch.resolution)[0]

    def _save(self, epoch: int) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.save({"epoch": epoch, "model": self.supernet.state_dict(),
                              "optimizer": self.optimizer.state_dict(), "random": random_states(self.generator),
                              "history": [asdict(record) for record in self.history]})

    def _resume(self) -> int:
        state = None if self.checkpoint is None else self.checkpoint.load()
        if state is None:
            return 0
        self.supernet.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_random_states(state["random"], self.generator)
        self.history = [SupernetEpoch(**record) for record in state["history"]]
        return int(state["epoch"])


def sandwich(supernet: Supernet, phase: ShrinkPhase, random_subnets: int, rng: random.Random) \
        -> tuple[Arch, list[Arch]]:
    """The sandwich rule's sub-networks for one step: the phase's largest, and its smallest and ``random_subnets``
    random ones (each once: a phase that varies little may draw the largest again, which then trains once)."""
    subnets = supernet.subnets
    largest = subnets.largest(phase.elastic)
    drawn = [subnets.smallest(phase.elastic), *(subnets.random(rng, phase.elastic) for _ in range(random_subnets))]
    unique = {arch.arch_id: arch for arch in drawn if arch.arch_id != largest.arch_id}
    return largest, list(unique.values())


def _check_data(supernet: Supernet, train: AnyDataset, validation: AnyDataset) -> None:
    if len(train) == 0 or len(validation) == 0:
        raise DataError(f"nothing to train or score on: {len(train)} training and {len(validation)} validation "
                        f"images")
    largest = supernet.subnets.reference
    for dataset in (train, validation):
        if (dataset.in_channels, dataset.num_classes) != (largest.in_channels, largest.num_classes):
            raise DataError(f"{dataset.name} has {dataset.in_channels} channel(s) and {dataset.num_classes} "
                            f"classes but the supernet takes {largest.in_channels} and outputs "
                            f"{largest.num_classes}; make its choices with in_channels={dataset.in_channels}, "
                            f"num_classes={dataset.num_classes}")


# ---------------------------------------------------------------------------------------------------
# Scoring a sub-network


def evaluate_subnet(supernet: Supernet, arch: Arch, train: AnyDataset, validation: AnyDataset, *,
                    settings: TrainSettings | None = None, count: int = RECALIBRATION_BATCHES) -> float:
    """Validation top-1 of ``arch``'s extracted network, its batch norm recalibrated on ``count`` training batches
    (``settings``: their size, the sample of the training data and the seed that orders it)."""
    settings = settings or TrainSettings()
    with torch.random.fork_rng(devices=[]):
        model = extract(supernet, arch)
        device = next(model.parameters()).device
        batches = TrainingBatches(train, resolution=arch.resolution, seed=settings.seed,
                                  max_train_samples=settings.max_train_samples, device=device)
        epoch = batches.epoch(torch.Generator().manual_seed(settings.seed), settings.batch_size,
                              size=arch.resolution)
        recalibrate_batch_norm(model, (images for images, _ in epoch), count)
        return evaluate_model(model, validation, settings, resolution=arch.resolution)[0]
