"""Sampling: a search space plus a chooser's decisions make an ``Arch``.

A chooser answers two kinds of question, each under a stable, readable parameter name:

    resolution, stem_channels, head_channels   global fields given as a list or a range
    stages.<i>.block                           the block choice's label: conv, sepconv, mbconv_e6, ...
    stages.<i>.<field>                         num_blocks, out_channels, kernel_size, expand_ratio, se_ratio,
                                               activation, skip, groups, bottleneck_ratio, num_heads, patch_size,
                                               class_token, position_embedding given as a list or a range
    stages.<i>.out_channels_multiplier         the multiplier of {base, multipliers}; the width is
                                               round_filters(base, multiplier) (stem_channels_multiplier and
                                               head_channels_multiplier likewise)
    stages.<i>.num_blocks_delta                the delta of {base, deltas}; the depth is base + delta
    regnet.<parameter>                         depth, w0, wa, wm, group_width, bottleneck_ratio, se_ratio of a
                                               space whose stages RegNet's rule generates

Lists are asked as categorical, ranges as integers. Only choices are asked: a fixed field is not, and
neither is a field that does not apply to the chosen block type (no ``expand_ratio`` for a sepconv
stage). Decisions come in a fixed order: resolution, stem_channels, head_channels, then stage by stage
its block and then its fields in Stage field order. So a record of the decisions (``RecordingChooser``,
or an Optuna trial's ``params``) replays to the same architecture through ``FixedChooser``.

Light core: no torch, no numpy; optuna is never imported here (``OptunaChooser`` takes a trial).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from nasscale.errors import NasscaleError
from nasscale.space.domains import Categorical, Deltas, Domain, Fixed, IntRange, Multipliers
from nasscale.space.model import SearchSpace, StageSpace, build_stage
from nasscale.space.regnet import regnet_parameters
from nasscale.spec.arch import Arch
from nasscale.spec.regnet import regnet_stages
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import Activation

Choice = str | int | float | bool


class Chooser(Protocol):
    def categorical(self, name: str, choices: Sequence[Choice]) -> Any: ...

    def integer(self, name: str, low: int, high: int, step: int) -> int: ...


class RandomChooser:
    """Uniform choices from its own ``random.Random``: the same seed gives the same sequence of archs."""

    def __init__(self, seed: int):
        self.random = random.Random(seed)

    def categorical(self, name: str, choices: Sequence[Choice]) -> Any:
        return self.random.choice(list(choices))

    def integer(self, name: str, low: int, high: int, step: int) -> int:
        return self.random.randrange(low, high + 1, step)


class FixedChooser:
    """Replays recorded decisions, e.g. an Optuna trial's ``params`` or a ``RecordingChooser``'s record."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = dict(params)

    def _recorded(self, name: str) -> Any:
        if name not in self.params:
            recorded = ", ".join(sorted(self.params)) or "nothing"
            raise NasscaleError(f"no recorded value for parameter {name!r}; the record has {recorded}")
        return self.params[name]

    def categorical(self, name: str, choices: Sequence[Choice]) -> Any:
        value = self._recorded(name)
        for choice in choices:
            # JSON may have turned 3 into 3.0; hand back the space's own value.
            if choice == value and isinstance(choice, bool) == isinstance(value, bool):
                return choice
        raise NasscaleError(f"parameter {name!r}: recorded value {value!r} is not one of {list(choices)}")

    def integer(self, name: str, low: int, high: int, step: int) -> int:
        value = self._recorded(name)
        valid = isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer()
        if not valid or not low <= value <= high or (int(value) - low) % step:
            raise NasscaleError(f"parameter {name!r}: recorded value {value!r} is not an integer in "
                                f"{low}..{high} in steps of {step}")
        return int(value)


class OptunaChooser:
    """Asks an Optuna trial (``study.ask()`` or an objective's argument)."""

    def __init__(self, trial: Any):
        self.trial = trial

    def categorical(self, name: str, choices: Sequence[Choice]) -> Any:
        return self.trial.suggest_categorical(name, list(choices))

    def integer(self, name: str, low: int, high: int, step: int) -> int:
        value: int = self.trial.suggest_int(name, low, high, step=step)
        return value


class RecordingChooser:
    """Passes every decision to ``inner`` and records it in ``params`` ({name: value}), for storing a search."""

    def __init__(self, inner: Chooser):
        self.inner = inner
        self.params: dict[str, Any] = {}

    def categorical(self, name: str, choices: Sequence[Choice]) -> Any:
        self.params[name] = self.inner.categorical(name, choices)
        return self.params[name]

    def integer(self, name: str, low: int, high: int, step: int) -> int:
        value = self.inner.integer(name, low, high, step)
        self.params[name] = value
        return value


def choose(domain: Domain, name: str, chooser: Chooser) -> Any:
    """The value of one field: asked from ``chooser`` unless the domain is fixed."""
    match domain:
        case Fixed(value=value):
            return value
        case Categorical(choices=choices):
            return chooser.categorical(name, choices)
        case IntRange(low=low, high=high, step=step):
            return chooser.integer(name, low, high, step)
        case Multipliers(multipliers=multipliers):
            return domain.resolve(chooser.categorical(f"{name}_multiplier", multipliers))
        case Deltas(deltas=deltas):
            return domain.resolve(chooser.categorical(f"{name}_delta", deltas))
    raise TypeError(f"{name}: not a search-space domain: {domain!r}")


def sample(space: SearchSpace, chooser: Chooser, *, in_channels: int = 3, num_classes: int = 1000,
           resolution: int | None = None) -> Arch:
    """One architecture of ``space``; ``resolution`` overrides the space's (and is then not asked)."""
    if resolution is None:
        resolution = choose(space.resolution, "resolution", chooser)
    stem_channels = choose(space.stem_channels, "stem_channels", chooser)
    head_channels = choose(space.head_channels, "head_channels", chooser)
    if space.regnet is not None:
        stages = sample_regnet_stages(space.regnet, chooser)
    else:
        stages = tuple(sample_stage(index, stage, chooser, space.activation)
                       for index, stage in enumerate(space.stages))
    return Arch(stages=stages, stem_channels=stem_channels, head_channels=head_channels, resolution=resolution,
                in_channels=in_channels, num_classes=num_classes, **space.arch_fields())


def sample_stage(index: int, stage: StageSpace, chooser: Chooser, activation: Activation | None) -> Stage:
    prefix = f"stages.{index}"
    variant = stage.block[0]
    if len(stage.block) > 1:
        variant = stage.variant(chooser.categorical(f"{prefix}.block", stage.labels))
    domains = stage.field_domains(variant, activation)
    values = {name: choose(domain, f"{prefix}.{name}", chooser) for name, domain in domains.items()}
    return build_stage(variant.block, stage.stride, values)


def sample_regnet_stages(regnet: Any, chooser: Chooser) -> tuple[Stage, ...]:
    """The stages RegNet's rule makes from the chosen parameters (asked as ``regnet.<parameter>``)."""
    values = {name: choose(domain, f"regnet.{name}", chooser) for name, domain in regnet.domains().items()}
    return regnet_stages(regnet_parameters(values))


class _PathChooser:
    """Follows a path of choice indices (the first choice past its end) and records how many options each decision
    had, so that ``enumerate_space`` can step through every path like an odometer."""

    def __init__(self, path: list[int]):
        self.path = path
        self.widths: list[int] = []

    def _index(self, width: int) -> int:
        position = len(self.widths)
        self.widths.append(width)
        return self.path[position] if position < len(self.path) else 0

    def categorical(self, name: str, choices: Sequence[Choice]) -> Any:
        return list(choices)[self._index(len(choices))]

    def integer(self, name: str, low: int, high: int, step: int) -> int:
        return low + step * self._index((high - low) // step + 1)


def enumerate_space(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000,
                    limit: int | None = None) -> Iterator[Arch]:
    """Every distinct architecture of ``space`` once, in a fixed order (decision paths in lexicographic order,
    a repeat of an earlier architecture skipped). ``limit`` stops after that many, for spaces too big to list."""
    seen: set[str] = set()
    path: list[int] = []
    while limit is None or len(seen) < limit:
        chooser = _PathChooser(path)
        arch = sample(space, chooser, in_channels=in_channels, num_classes=num_classes)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            yield arch
        following = _next_path(path, chooser.widths)
        if following is None:
            return
        path = following


def _next_path(path: list[int], widths: list[int]) -> list[int] | None:
    full = path + [0] * (len(widths) - len(path))
    for position in reversed(range(len(widths))):
        if full[position] + 1 < widths[position]:
            return full[:position] + [full[position] + 1]
    return None
