"""The value domains of a search space's fields (``Fixed``, ``Categorical``, ``IntRange``, ``Multipliers``,
``Deltas``), what each can draw (``distinct_values``), and the mapping forms each field accepts in YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from nasscale.errors import SpecError
from nasscale.spec.rescaling import round_filters

Scalar = str | int | float | bool

# ---------------------------------------------------------------------------------------------------
# Domains: the values one field may take


@dataclass(frozen=True, slots=True, kw_only=True)
class Fixed:
    value: Scalar

    def values(self) -> tuple[Scalar, ...]:
        return (self.value,)

    def to_data(self) -> Any:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Categorical:
    choices: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise SpecError("", "empty list of choices")
        _check_unique(self.choices, "choice")

    def values(self) -> tuple[Scalar, ...]:
        return self.choices

    def to_data(self) -> Any:
        return list(self.choices)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntRange:
    low: int
    high: int
    step: int = 1

    def __post_init__(self) -> None:
        for name in ("low", "high", "step"):
            if not is_int(getattr(self, name)):
                raise SpecError("", f"range {name} must be an integer, got {getattr(self, name)!r}")
        if self.step < 1:
            raise SpecError("", f"range step must be at least 1, got {self.step}")
        if self.low > self.high:
            raise SpecError("", f"range low {self.low} is greater than high {self.high}")
        if (self.high - self.low) % self.step:
            # Optuna would silently move high; say so instead.
            raise SpecError("", f"range high - low ({self.high - self.low}) is not a multiple of step {self.step}")

    def values(self) -> tuple[int, ...]:
        return tuple(range(self.low, self.high + 1, self.step))

    def to_data(self) -> Any:
        return {"low": self.low, "high": self.high, "step": self.step}


@dataclass(frozen=True, slots=True, kw_only=True)
class Multipliers:
    """Channels relative to a backbone width, MnasNet style, rounded by EfficientNet's rule."""

    base: int
    multipliers: tuple[float, ...]

    def __post_init__(self) -> None:
        if not is_int(self.base) or self.base < 1:
            raise SpecError("", f"base must be a positive integer, got {self.base!r}")
        if not self.multipliers:
            raise SpecError("", "empty list of multipliers")
        for multiplier in self.multipliers:
            if not is_number(multiplier) or multiplier <= 0:
                raise SpecError("", f"multipliers must be positive numbers, got {multiplier!r}")
        _check_unique(self.multipliers, "multiplier")

    def resolve(self, multiplier: float) -> int:
        return round_filters(self.base, multiplier)

    def values(self) -> tuple[int, ...]:
        return tuple(self.resolve(multiplier) for multiplier in self.multipliers)

    def to_data(self) -> Any:
        return {"base": self.base, "multipliers": list(self.multipliers)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Deltas:
    """Layers relative to a backbone depth, MnasNet style."""

    base: int
    deltas: tuple[int, ...]

    def __post_init__(self) -> None:
        if not is_int(self.base):
            raise SpecError("", f"base must be an integer, got {self.base!r}")
        if not self.deltas:
            raise SpecError("", "empty list of deltas")
        for delta in self.deltas:
            if not is_int(delta):
                raise SpecError("", f"deltas must be integers, got {delta!r}")
        _check_unique(self.deltas, "delta")

    def resolve(self, delta: int) -> int:
        return self.base + delta

    def values(self) -> tuple[int, ...]:
        return tuple(self.resolve(delta) for delta in self.deltas)

    def to_data(self) -> Any:
        return {"base": self.base, "deltas": list(self.deltas)}


Domain = Fixed | Categorical | IntRange | Multipliers | Deltas


def distinct_values(domain: Domain) -> tuple[Scalar, ...]:
    """The values a domain can produce, once each (two multipliers may round to the same width)."""
    return tuple(dict.fromkeys(domain.values()))


def distinct_integer_values(domain: Domain) -> tuple[int, ...]:
    """``distinct_values`` of an integer field (a width, a depth, a resolution): a built space's checks have
    tried every value where Stage and Arch accept only integers."""
    return cast(tuple[int, ...], distinct_values(domain))


def explained_values(domain: Domain) -> list[tuple[Scalar, str]]:
    """Each value with how a relative domain got it, so a problem line can say where it came from."""
    match domain:
        case Multipliers(base=base, multipliers=multipliers):
            return [(domain.resolve(m), f" (round_filters({base}, {m:g}))") for m in multipliers]
        case Deltas(base=base, deltas=deltas):
            return [(domain.resolve(d), f" (base {base}, delta {d:+d})") for d in deltas]
    return [(value, "") for value in domain.values()]


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_unique(values: tuple[Any, ...], what: str) -> None:
    seen: list[Any] = []
    for value in values:
        # A list scan rather than a set: 1 == True and 3 == 3.0 must count as repeats, [] must not crash.
        if value in seen:
            raise SpecError("", f"lists the {what} {value!r} more than once")
        seen.append(value)


# The mapping forms each searchable field accepts besides one value and a list of values.
MAPPING_FORMS: dict[str, frozenset[str]] = {
    "num_blocks": frozenset({"range", "deltas"}),
    "out_channels": frozenset({"range", "multipliers"}),
    "kernel_size": frozenset({"range"}),
    "expand_ratio": frozenset(),
    "se_ratio": frozenset(),
    "activation": frozenset(),
    "skip": frozenset(),
    "groups": frozenset(),
    "bottleneck_ratio": frozenset(),
    "num_heads": frozenset(),
    "patch_size": frozenset(),
    "class_token": frozenset(),
    "position_embedding": frozenset(),
    "resolution": frozenset({"range"}),
    "stem_channels": frozenset({"range", "multipliers"}),
    "head_channels": frozenset({"range", "multipliers"}),
}


FORM_KEYS = {"range": ("low", "high", "step"), "multipliers": ("base", "multipliers"), "deltas": ("base", "deltas")}


FORM_REQUIRED = {"range": ("low", "high"), "multipliers": ("base", "multipliers"), "deltas": ("base", "deltas")}


FORM_SYNTAX = {"range": "{low, high, step}", "multipliers": "{base, multipliers}", "deltas": "{base, deltas}"}


DOMAIN_FORMS: dict[type, str] = {IntRange: "range", Multipliers: "multipliers", Deltas: "deltas"}


def form_misplaced(form: str) -> str:
    fields = ", ".join(field for field, field_forms in MAPPING_FORMS.items() if form in field_forms)
    return f"{FORM_SYNTAX[form]} is only for {fields}"
