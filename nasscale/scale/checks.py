"""Argument checks of the scaling functions: one line each, naming the argument and the value received."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nasscale.errors import SpecError

# ---------------------------------------------------------------------------------------------------------------
# Argument checks: one line each, naming the argument


def check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise SpecError(name, f"must be a positive number, got {value!r}")


def check_tolerance(tolerance: Any) -> None:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < 1:
        raise SpecError("tolerance", f"must be a fraction in [0, 1), got {tolerance!r}")




def check_target(target_macs: Any) -> None:
    if isinstance(target_macs, bool) or not isinstance(target_macs, int) or target_macs < 1:
        raise SpecError("target_macs", f"must be a positive integer count of MACs, got {target_macs!r}")


def check_phis(phis: Sequence[int]) -> list[int]:
    phis = list(phis)
    if not phis:
        raise SpecError("phis", "must name at least one phi")
    for phi in phis:
        if isinstance(phi, bool) or not isinstance(phi, int) or not 0 <= phi <= MAX_PHI:
            raise SpecError("phi", f"must be an integer in 0..{MAX_PHI}, got {phi!r}")
    return phis


def check_coefficients(coefficients: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(coefficients)
    if len(values) != 3:
        raise SpecError("coefficients", f"must be (alpha, beta, gamma), got {values!r}")
    for name, value in zip(("alpha", "beta", "gamma"), values, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 1:
            raise SpecError(name, f"must be at least 1 (compound scaling never shrinks), got {value!r}")
    return values


MAX_PHI = 10  # 2^10 x the base's MACs; beyond that a ladder step is no longer a sensible request
