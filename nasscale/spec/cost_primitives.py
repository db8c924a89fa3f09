"""The counting rules of single layers (``Cost``, ``conv``, ``norm``, ``linear``, ``conv_norm``), which every
family's cost rules add up: ``nasscale.spec.cost`` and the families' own modules (``attention_cost``) import them
from here, so that no module of rules imports another's table.

MACs are multiply-accumulates at batch 1; see ``nasscale.spec.cost`` for the convention. Light core: no torch.
"""

from __future__ import annotations

from typing import NamedTuple

# Costs below are made with tuple.__new__ directly: a NamedTuple's own __new__ is a Python function, and cost()
# makes dozens of Costs per architecture.
new_tuple = tuple.__new__


class Cost(NamedTuple):
    """Parameters and MACs. A NamedTuple rather than a dataclass: cost() adds hundreds of these per
    architecture inside search loops, and tuples are several times cheaper to create."""

    params: int = 0
    macs: int = 0

    def __add__(self, other: Cost) -> Cost:  # type: ignore[override]  # element-wise, not concatenation
        return new_tuple(Cost, (self.params + other.params, self.macs + other.macs))

    def __mul__(self, times: int) -> Cost:  # type: ignore[override]
        return new_tuple(Cost, (self.params * times, self.macs * times))


ZERO = Cost()


def conv(in_channels: int, out_channels: int, kernel_size: int, output_size: int, *,
         groups: int = 1, bias: bool = False) -> Cost:
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    return new_tuple(Cost, (weights + (out_channels if bias else 0), weights * output_size * output_size))


def norm(channels: int) -> Cost:
    return new_tuple(Cost, (2 * channels, 0))  # weight and bias; running statistics are buffers, not parameters


def linear(in_features: int, out_features: int, positions: int = 1) -> Cost:
    return new_tuple(Cost, (in_features * out_features + out_features, in_features * out_features * positions))


def conv_norm(in_channels: int, out_channels: int, kernel_size: int, output_size: int, groups: int = 1) -> Cost:
    """conv() then norm(), as one Cost: the commonest layer pair, so one tuple rather than three."""
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    return new_tuple(Cost, (weights + 2 * out_channels, weights * output_size * output_size))
