"""The proxy-training recipe: ``TrainSettings`` and its defaults, the one place they are written.

The search's config (``nasscale.search.config``) takes its training defaults from here, and the training loop
(``nasscale.evaluate.training``) reads these settings. Light: torch is imported only to check a CUDA device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nasscale.errors import SpecError

OPTIMIZERS = ("sgd", "adamw")
# The evaluation protocol's split sizes (nasscale.evaluate.data): validation out of the training data, and the
# test set held out of data that has no official one.
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2
SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainSettings:
    """How to train one candidate briefly from scratch.

    ``learning_rate`` suits SGD (momentum 0.9, Nesterov); for AdamW use about 1e-3 and a larger
    ``weight_decay``, which AdamW decouples from the gradient. Weight decay skips one-dimensional
    parameters (biases, norm scales). ``resolution`` resizes images to a square of that side once per
    dataset, not per batch. ``max_train_samples`` trains on a stratified sample chosen by ``seed``.
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
    if settings.optimizer not in OPTIMIZERS:
        raise SpecError("optimizer", f"unknown optimizer {settings.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if settings.schedule not in SCHEDULES:
        raise SpecError("schedule", f"unknown schedule {settings.schedule!r}; choose one of {', '.join(SCHEDULES)}")


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
