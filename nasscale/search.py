"""One search trial, whichever backend runs it: sample an architecture, check the budget analytically,
build it, train it on the proxy task, and record everything a study needs to rebuild the model.

The flow per trial: sample(space, chooser) -> Arch -> cost(arch) -> budget check -> build -> train.
An over-budget sample stops at the budget check, before anything is built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nasscale.arch import Arch, summary, to_dict
from nasscale.cost import Cost, cost
from nasscale.errors import NasscaleError
from nasscale.study import SearchConfig
from nasscale.units import format_count

logger = logging.getLogger(__name__)

# Trial attributes: the study is the single record of a search, so each trial keeps all of these.
ATTR_ARCH = "arch"
ATTR_ARCH_ID = "arch_id"
ATTR_SUMMARY = "summary"
ATTR_MACS = "macs"
ATTR_PARAMS = "params"
ATTR_ACCURACY = "accuracy"
ATTR_HISTORY = "history"
ATTR_SEED = "seed"
ATTR_INFEASIBLE = "infeasible"
ATTR_FAIL_REASON = "fail_reason"
ATTR_TIMINGS = "timings"
ATTR_TRAINED = "trained"


class SearchError(NasscaleError):
    """The search cannot start or go on (e.g. a budget that no architecture of the space meets)."""


class Progress(Protocol):
    """What the CLI shows while a search runs; the library reports, the CLI renders."""

    def trial_started(self, number: int, arch: Arch, trial_cost: Cost) -> None: ...
    def epoch_finished(self, number: int, epoch: int, epochs: int, accuracy: float) -> None: ...
    def trial_finished(self, number: int, state: str, values: list[float] | None) -> None: ...


class SilentProgress:
    def trial_started(self, number: int, arch: Arch, trial_cost: Cost) -> None:
        pass

    def epoch_finished(self, number: int, epoch: int, epochs: int, accuracy: float) -> None:
        pass

    def trial_finished(self, number: int, state: str, values: list[float] | None) -> None:
        pass


@dataclass(frozen=True, slots=True)
class SearchContext:
    """Everything loaded once per search run and shared by its trials."""

    config: SearchConfig
    space: Any  # nasscale.space.SearchSpace
    train: Any  # nasscale.data.Dataset
    validation: Any
    in_channels: int
    num_classes: int


def prepare_context(config: SearchConfig) -> SearchContext:
    """Load the space and the data (clear errors for both) and check the budget is reachable at all."""
    from nasscale.data import load_splits
    from nasscale.space import load_space, mac_range

    space = load_space(config.space)
    train, validation = load_splits(config.data, validation_fraction=config.validation_fraction, seed=config.seed,
                                    max_train_samples=config.max_train_samples)
    context = SearchContext(config, space, train, validation, train.in_channels, train.num_classes)
    if config.max_macs is not None:
        smallest, _ = mac_range(space, in_channels=context.in_channels, num_classes=context.num_classes)
        if smallest > config.max_macs:
            raise SearchError(f"--max-macs {format_count(config.max_macs)} is below the smallest architecture of "
                              f"space {config.space!r} ({format_count(smallest)} MACs); raise the budget or use a "
                              "smaller space")
    return context


def propose(chooser: Any, context: SearchContext) -> Arch:
    from nasscale.sampling import sample

    return sample(context.space, chooser, in_channels=context.in_channels, num_classes=context.num_classes)


def budget_violation(trial_cost: Cost, config: SearchConfig) -> str | None:
    """Why an architecture is over budget, or None. Checked before anything is built."""
    if config.max_macs is not None and trial_cost.macs > config.max_macs:
        return f"MACs {format_count(trial_cost.macs)} > budget {format_count(config.max_macs)}"
    if config.max_params is not None and trial_cost.params > config.max_params:
        return f"params {format_count(trial_cost.params)} > budget {format_count(config.max_params)}"
    return None


def mnas_reward(accuracy: float, macs: int, target_macs: int, exponent: float) -> float:
    """MnasNet's soft-constraint reward ACC x (MACs / T) ^ w, the objective behind EfficientNet-B0."""
    return accuracy * (macs / target_macs) ** exponent


def objective_values(accuracy: float, trial_cost: Cost, config: SearchConfig) -> list[float]:
    if config.reward == "mnas":
        return [mnas_reward(accuracy, trial_cost.macs, config.target_macs, config.reward_exponent)]
    by_name = {"accuracy": accuracy, "macs": float(trial_cost.macs), "params": float(trial_cost.params)}
    return [by_name[name] for name in config.objectives]


def train_settings(config: SearchConfig, seed: int):
    from nasscale.evaluators.training import TrainSettings

    return TrainSettings(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                         optimizer=config.optimizer, schedule=config.schedule,
                         label_smoothing=config.label_smoothing, resolution=config.proxy_resolution,
                         threads=config.threads, seed=seed)


def architecture_attributes(arch: Arch, trial_cost: Cost) -> dict[str, Any]:
    return {ATTR_ARCH: to_dict(arch), ATTR_ARCH_ID: arch.arch_id, ATTR_SUMMARY: summary(arch),
            ATTR_MACS: trial_cost.macs, ATTR_PARAMS: trial_cost.params}


def train_architecture(arch: Arch, context: SearchContext, *, seed: int,
                       on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Build and proxy-train ``arch``; returns the attributes to record (accuracy, history, timings)."""
    import torch

    from nasscale.build import build
    from nasscale.evaluators.training import train_model

    started = time.perf_counter()
    torch.manual_seed(seed)  # the initial weights are part of what a seed reproduces
    model = build(arch)
    build_seconds = time.perf_counter() - started

    def report(record) -> None:
        if on_epoch is not None:
            on_epoch(record.epoch, record.validation_accuracy)

    result = train_model(model, context.train, context.validation, train_settings(context.config, seed),
                         on_epoch=report)
    return {
        ATTR_ACCURACY: result.validation_accuracy,
        ATTR_HISTORY: [[record.epoch, record.train_loss, record.validation_accuracy, record.seconds]
                       for record in result.history],
        ATTR_TIMINGS: {"build_seconds": build_seconds, "train_seconds": result.train_seconds,
                       "train_images_per_second": result.train_images_per_second},
    }


def measure_cost(arch: Arch) -> tuple[Cost, float]:
    started = time.perf_counter()
    trial_cost = cost(arch)
    return trial_cost, time.perf_counter() - started
