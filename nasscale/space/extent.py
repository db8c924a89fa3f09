"""How big a space is: how many distinct architectures it holds (``space_size``), the range of MACs and
params its samples can have (``cost_range``, ``mac_range``, exact, without enumerating the space), and the
one-row description ``nasscale spaces`` lists.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from itertools import combinations, product
from typing import Any

from nasscale.space.domains import Scalar, distinct_integer_values, distinct_values
from nasscale.space.model import SEARCHABLE_GLOBALS, SearchSpace, StageSpace, build_stage, probe_arch_fields
from nasscale.space.regnet import distinct_stage_lists
from nasscale.spec import cost as cost_model
from nasscale.spec.arch import Arch, StagePlacement, first_stage_channels, stem_output_size
from nasscale.spec.geometry import stage_output_size
from nasscale.spec.stage import Stage
from nasscale.spec.vocabulary import (
    Activation,
    BlockType,
    HeadType,
)


def space_size(space: SearchSpace) -> int:
    """How many distinct architectures the space holds (not how many parameter combinations)."""
    total = math.prod(len(distinct_values(getattr(space, name))) for name in SEARCHABLE_GLOBALS)
    if space.regnet is not None:
        return total * len(distinct_stage_lists(space.regnet))
    for stage in space.stages:
        total *= _stage_size(stage, space.activation)
    return total


def _stage_size(stage: StageSpace, activation: Activation | None) -> int:
    # Each variant spans a box (a product of per-field value sets). Boxes of different block types are
    # disjoint; those of one type may overlap (mbconv with expand_ratio [3, 6] next to mbconv_e3), so
    # their union is counted by inclusion-exclusion.
    boxes: dict[BlockType, list[dict[str, frozenset[Scalar]]]] = {}
    for variant in stage.block:
        domains = stage.field_domains(variant, activation)
        box = {name: frozenset(domain.values()) for name, domain in domains.items()}
        boxes.setdefault(variant.block, []).append(box)
    total = 0
    for same_type in boxes.values():
        for count in range(1, len(same_type) + 1):
            for subset in combinations(same_type, count):
                volume = math.prod(len(frozenset.intersection(*(box[name] for box in subset))) for name in subset[0])
                total += volume if count % 2 else -volume
    return total


@dataclass(frozen=True, slots=True)
class CostRange:
    macs_min: int
    macs_max: int
    params_min: int
    params_max: int

    @classmethod
    def of(cls, cost: cost_model.Cost) -> CostRange:
        return cls(cost.macs, cost.macs, cost.params, cost.params)

    def plus(self, cost: cost_model.Cost) -> CostRange:
        return CostRange(self.macs_min + cost.macs, self.macs_max + cost.macs,
                         self.params_min + cost.params, self.params_max + cost.params)

    def union(self, other: CostRange | None) -> CostRange:
        if other is None:  # the first bound to reach a state
            return self
        return CostRange(min(self.macs_min, other.macs_min), max(self.macs_max, other.macs_max),
                         min(self.params_min, other.params_min), max(self.params_max, other.params_max))


# Stage fields that change a stage's cost; activation, skip and num_heads (attention is 2 L^2 C whatever the heads)
# do not.
COST_FIELDS = ("num_blocks", "out_channels", "kernel_size", "expand_ratio", "se_ratio", "groups", "bottleneck_ratio",
               "patch_size", "class_token", "position_embedding")


def cost_range(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000,
               resolution: int | None = None) -> CostRange:
    """Exact smallest and largest MACs and params over every architecture of the space (each bound on its own).

    A stage's cost depends only on its input width, its input size and its own fields, and sizes do not
    depend on widths, so a dynamic program over stages whose state is (width, size) is exact.
    ``resolution`` fixes the resolution as ``sample(resolution=...)`` does."""
    resolutions = (resolution,) if resolution is not None else distinct_integer_values(space.resolution)
    if space.regnet is not None:
        return _generated_cost_range(space, in_channels, num_classes, resolutions)
    states: dict[tuple[int, int], CostRange] = {}
    for size in resolutions:
        for channels in distinct_integer_values(space.stem_channels):
            probe = Arch(**probe_arch_fields(space) | {"resolution": size, "stem_channels": channels,
                                                        "in_channels": in_channels})
            key = (first_stage_channels(probe), stem_output_size(probe))  # the image's channels with no stem
            states[key] = CostRange.of(cost_model.stem_cost(probe)).union(states.get(key))
    for index, stage in enumerate(space.stages):
        configurations = _cost_configurations(stage, space.activation)
        reached: dict[tuple[int, int], CostRange] = {}
        for (channels, size), bounds in states.items():
            for configuration in configurations:
                part = cost_model.stage_cost(StagePlacement(index, configuration, channels, size, 0))
                key = (configuration.out_channels, stage_output_size(configuration, channels, size))
                reached[key] = bounds.plus(part).union(reached.get(key))
        states = reached
    totals = [bounds.plus(_head_cost(space.head, channels, head_channels, size, num_classes))
              for (channels, size), bounds in states.items()
              for head_channels in distinct_integer_values(space.head_channels)]
    return functools.reduce(CostRange.union, totals)


def _generated_cost_range(space: SearchSpace, in_channels: int, num_classes: int,
                          resolutions: tuple[int, ...]) -> CostRange:
    """Every generated stage list at every resolution, stem and head width: exact, by enumeration."""
    bounds: CostRange | None = None
    for stages, size, stem, head in product(distinct_stage_lists(space.regnet), resolutions,
                                            distinct_integer_values(space.stem_channels),
                                            distinct_integer_values(space.head_channels)):
        arch = Arch(stages=stages, resolution=size, stem_channels=stem, head_channels=head, in_channels=in_channels,
                    num_classes=num_classes, **space.arch_fields())
        bounds = CostRange.of(cost_model.cost(arch)).union(bounds)
    assert bounds is not None  # every domain, and the generated stage lists, hold at least one value
    return bounds


def _cost_configurations(stage: StageSpace, activation: Activation | None) -> list[Stage]:
    """One Stage per distinct combination of the fields that change the cost."""
    seen: dict[tuple[Any, ...], Stage] = {}
    for variant in stage.block:
        domains = stage.field_domains(variant, activation)
        names = [name for name in COST_FIELDS if name in domains]
        for combination in product(*(distinct_values(domains[name]) for name in names)):
            key = (variant.block, *combination)
            if key not in seen:
                seen[key] = build_stage(variant.block, stage.stride, dict(zip(names, combination, strict=True)))
    return list(seen.values())


def _head_cost(head: HeadType, features: int, head_channels: int, size: int, num_classes: int) -> cost_model.Cost:
    # cost.head_cost for a head fed `features` channels at `size`; the brute-force test pins the two together.
    return cost_model.head_part_cost(head, features, size, num_classes, head_channels=head_channels)


def mac_range(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000,
              resolution: int | None = None) -> tuple[int, int]:
    """Exact (smallest, largest) MACs over the space, every resolution choice included unless ``resolution``
    fixes it."""
    bounds = cost_range(space, in_channels=in_channels, num_classes=num_classes, resolution=resolution)
    return bounds.macs_min, bounds.macs_max


def stage_count(space: SearchSpace) -> int:
    """The number of stages; for a generated space, the most any of its architectures has."""
    if space.regnet is None:
        return len(space.stages)

    return max(len(stages) for stages in distinct_stage_lists(space.regnet))


def describe_space(space: SearchSpace, *, in_channels: int = 3, num_classes: int = 1000) -> dict[str, Any]:
    """A summary row for ``nasscale spaces``; ``resolution`` is the space's resolution as written."""
    bounds = cost_range(space, in_channels=in_channels, num_classes=num_classes)
    return {"name": space.name, "description": space.description, "stages": stage_count(space),
            "size": space_size(space), "macs_min": bounds.macs_min, "macs_max": bounds.macs_max,
            "params_min": bounds.params_min, "params_max": bounds.params_max,
            "resolution": space.resolution.to_data()}
