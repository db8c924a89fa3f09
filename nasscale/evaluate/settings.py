"""The proxy-training recipe: ``TrainSettings`` and its defaults, the one place they are written.

The search's config (``nasscale.search.config``) takes its training defaults from here, and the training loop
(``nasscale.evaluate.training``) reads these settings. Light: torch is imported only to check a CUDA device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nasscale.errors import SpecError

OPTIMIZERS = ("sgd", "adamw", "rmsprop", "lamb")
LOSSES = ("cross-entropy", "binary-cross-entropy")
AUGMENTATIONS = ("none", "randaugment", "trivialaugment")
# RandAugment magnitudes are on the papers' scale (TensorFlow's and timm's levels, 10 = the largest);
# EfficientNetV2's M and L configs go past it to 15 and 20.
MAX_MAGNITUDE = 30.0
# The evaluation protocol's split sizes (nasscale.evaluate.data): validation out of the training data, and the
# test set held out of data that has no official one.
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2
SCHEDULES = ("cosine", "constant", "exponential")
SMALLEST_PROGRESSIVE_SIZE = 8  # pixels: a stage's training images are never smaller


@dataclass(frozen=True, slots=True, kw_only=True)
class Progressive:
    """EfficientNetV2's progressive learning (Tan & Le 2021, section 4 and Algorithm 1): training is split into
    ``stages`` of equal length; each (start, end) pair ramps linearly from the first stage to the last. ``size`` is
    relative to the training resolution (1.0 = the deployment resolution), so the schedule fits 28 px data as
    well as 384 px. ``magnitude`` is RandAugment's, ``mixup`` the Beta parameter, ``dropout`` the classifier's."""

    stages: int = 4
    size: tuple[float, float] = (0.5, 1.0)
    magnitude: tuple[float, float] = (5.0, 10.0)
    mixup: tuple[float, float] = (0.0, 0.0)
    dropout: tuple[float, float] = (0.1, 0.2)

    def __post_init__(self) -> None:
        if not isinstance(self.stages, int) or self.stages < 1:
            raise SpecError("progressive.stages", f"must be a positive integer, got {self.stages!r}")
        checks = {"size": (0.0, 4.0, False), "magnitude": (0.0, MAX_MAGNITUDE, True), "mixup": (0.0, 100.0, True),
                  "dropout": (0.0, 1.0, True)}
        for name, (low, high, low_included) in checks.items():
            pair = getattr(self, name)
            if len(pair) != 2 or not all(_number_within(value, low, high, low_included) for value in pair):
                bracket = "[" if low_included else "("
                raise SpecError(f"progressive.{name}", f"must be two numbers (start, end) in {bracket}{low:g}, "
                                                       f"{high:g}], got {pair!r}")

    def stage_of(self, epoch: int, epochs: int) -> int:
        """The stage (from 0) that epoch ``epoch`` (from 1) of ``epochs`` belongs to."""
        return min(self.stages - 1, (epoch - 1) * self.stages // epochs)

    def value(self, name: str, stage: int) -> float:
        start, end = (float(value) for value in getattr(self, name))
        return start if self.stages == 1 else start + (end - start) * stage / (self.stages - 1)

    def size_at(self, stage: int, resolution: int) -> int:
        return max(SMALLEST_PROGRESSIVE_SIZE, round(resolution * self.value("size", stage)))


def _number_within(value: object, low: float, high: float, low_included: bool) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return (low <= value if low_included else low < value) and value <= high


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSettings:
    """How to train one candidate briefly from scratch.

    ``learning_rate`` suits SGD (momentum 0.9, Nesterov); for AdamW use about 1e-3 and a larger
    ``weight_decay``, which AdamW decouples from the gradient. Weight decay skips one-dimensional
    parameters (biases, norm scales). ``resolution`` resizes images to a square of that side once per
    dataset, not per batch. ``max_train_samples`` trains on a stratified sample chosen by ``seed``.

    The defaults are the fast proxy of search trials; the named recipes (``nasscale.evaluate.recipes``) set the
    rest: augmentation (``augment`` with ``augment_ops`` and ``magnitude``, ``random_erasing``), mixing
    (``mixup``/``cutmix``: Beta parameters, one of them per batch when both are set), EMA of the weights
    (``ema_decay``), the classifier's ``dropout`` and ``drop_path_rate`` (None: the architecture's own),
    ``progressive`` learning, and FixRes: scoring also at ``test_resolution``, after fine-tuning batch norm and the
    classifier there for ``fixres_epochs``. ``decay_rate`` per ``decay_epochs`` is the exponential schedule's.
    """

    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 5e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.1
    resolution: int | None = None
    threads: int = 1
    seed: int = 0
    max_train_samples: int | None = None
    device: str = "cpu"  # cpu, cuda or cuda:N; the data moves to the device once, not per batch
    loss: str = "cross-entropy"
    decay_rate: float = 0.97
    decay_epochs: float = 2.4
    augment: str = "none"
    augment_ops: int = 2
    magnitude: float = 9.0
    random_erasing: float = 0.0  # probability per image
    mixup: float = 0.0
    cutmix: float = 0.0
    ema_decay: float | None = None
    dropout: float | None = None
    drop_path_rate: float | None = None
    progressive: Progressive | None = None
    test_resolution: int | None = None
    fixres_epochs: int = 0

    def __post_init__(self) -> None:
        _check_settings(self)


def _check_settings(settings: TrainSettings) -> None:
    for name in ("epochs", "batch_size", "threads"):
        value = getattr(settings, name)
        if not isinstance(value, int) or value < 1:
            raise SpecError(name, f"must be a positive integer, got {value!r}")
    for name in ("resolution", "max_train_samples"):
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise SpecError(name, f"must be a positive integer or None, got {value!r}")
    if not (math.isfinite(settings.learning_rate) and settings.learning_rate > 0):
        raise SpecError("learning_rate", f"must be a positive number, got {settings.learning_rate!r}")
    if not (math.isfinite(settings.weight_decay) and settings.weight_decay >= 0):
        raise SpecError("weight_decay", f"must be zero or positive, got {settings.weight_decay!r}")
    if not 0 <= settings.warmup_epochs <= settings.epochs:
        raise SpecError("warmup_epochs", f"must lie between 0 and epochs ({settings.epochs}), "
                                         f"got {settings.warmup_epochs!r}")
    if not 0 <= settings.label_smoothing < 1:
        raise SpecError("label_smoothing", f"must lie in [0, 1), got {settings.label_smoothing!r}")
    check_device(settings.device)
    for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("loss", LOSSES),
                          ("augment", AUGMENTATIONS)):
        if getattr(settings, name) not in choices:
            raise SpecError(name, f"unknown {name} {getattr(settings, name)!r}; choose one of {', '.join(choices)}")
    _check_regularization(settings)


def _check_regularization(settings: TrainSettings) -> None:
    ranges = {"magnitude": (0.0, MAX_MAGNITUDE), "random_erasing": (0.0, 1.0), "mixup": (0.0, 100.0),
              "cutmix": (0.0, 100.0), "decay_rate": (0.0, 1.0)}
    for name, (low, high) in ranges.items():
        if not _number_within(getattr(settings, name), low, high, low_included=name != "decay_rate"):
            raise SpecError(name, f"must be a number in [{low:g}, {high:g}], got {getattr(settings, name)!r}")
    for name in ("ema_decay", "dropout", "drop_path_rate"):
        value = getattr(settings, name)
        if value is not None and not (_number_within(value, 0.0, 1.0, low_included=True) and value < 1):
            raise SpecError(name, f"must be a number in [0, 1) or None, got {value!r}")
    if not _number_within(settings.decay_epochs, 0.0, math.inf, low_included=False):
        raise SpecError("decay_epochs", f"must be a positive number, got {settings.decay_epochs!r}")
    if not isinstance(settings.augment_ops, int) or settings.augment_ops < 1:
        raise SpecError("augment_ops", f"must be a positive integer, got {settings.augment_ops!r}")
    if not isinstance(settings.fixres_epochs, int) or settings.fixres_epochs < 0:
        raise SpecError("fixres_epochs", f"must be zero or a positive integer, got {settings.fixres_epochs!r}")
    if settings.test_resolution is not None and (not isinstance(settings.test_resolution, int)
                                                 or settings.test_resolution < 1):
        raise SpecError("test_resolution", f"must be a positive integer or None, got {settings.test_resolution!r}")
    if settings.fixres_epochs and settings.test_resolution is None:
        raise SpecError("fixres_epochs", "fine-tunes at the test resolution: set test_resolution as well")
    if settings.progressive is not None and settings.progressive.stages > settings.epochs:
        raise SpecError("progressive.stages", f"{settings.progressive.stages} stages do not fit in {settings.epochs} "
                                              f"epochs; use at most as many stages as epochs")


def check_device(device: str) -> None:
    """A device this machine has: cpu, or cuda[:N] where torch sees a GPU (one line otherwise)."""
    if device == "cpu":
        return
    if not isinstance(device, str) or not (device == "cuda" or device.startswith("cuda:")):
        raise SpecError("device", f"must be cpu, cuda or cuda:N, got {device!r}")
    import torch  # only for a GPU device: keeps torch off the light path of a CPU config

    if not torch.cuda.is_available():
        raise SpecError("device", f"{device} asked for, but torch {torch.__version__} sees no CUDA GPU on this "
                                  "machine; use --device cpu, or install a CUDA build of torch")
    index = torch.device(device).index
    if index is not None and index >= torch.cuda.device_count():
        raise SpecError("device", f"{device} asked for, but this machine has {torch.cuda.device_count()} GPU(s)")


# The recipe's defaults as one value: the search config and `nasscale train` take theirs from it.
RECIPE_DEFAULTS = TrainSettings()  # after _check_settings, which it runs
