"""RegNet's design space as a search space: instead of a list of stages, a space may give

    stages:
      regnet:
        depth: {low: 12, high: 28, step: 4}      a value, a list of values or an integer range
        w0: [24, 48, 56]
        wa: [20.71, 24.48, 27.89, 38.84]
        wm: [2.09, 2.4, 2.54, 2.65]
        group_width: [8, 16, 24]
        bottleneck_ratio: 1.0                     optional, default 1.0
        se_ratio: [0, 0.25]                       optional, default 0 (RegNetX); 0.25 is RegNetY

and every sample's stages come from RegNet's width rule (``nasscale.spec.regnet``): the widths are
quantised, blocks of one width form a stage, and widths fit the group width. The sampled parameters are
named ``regnet.<parameter>``. Since stages are generated, the space's size and cost range come from
enumerating the parameter grid (cached per space), not from the stage-by-stage dynamic program.

Light core: no torch, no numpy.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nasscale.errors import SpecError
from nasscale.space.domains import Categorical, Domain, Fixed, IntRange
from nasscale.spec.regnet import REGNET_PARAMETERS, RegNetParameters, check_regnet_parameter, regnet_stages
from nasscale.spec.stage import Stage

# The parameters a space must give; the others default (a RegNetX bottleneck of ratio 1).
REGNET_REQUIRED = ("depth", "w0", "wa", "wm", "group_width")
REGNET_DEFAULTS = {"bottleneck_ratio": 1.0, "se_ratio": 0.0}
INTEGER_PARAMETERS = ("depth", "w0", "group_width")  # these may be given as {low, high, step}


@dataclass(frozen=True, slots=True, kw_only=True)
class RegNetSpace:
    depth: Domain
    w0: Domain
    wa: Domain
    wm: Domain
    group_width: Domain
    bottleneck_ratio: Domain = Fixed(value=1.0)
    se_ratio: Domain = Fixed(value=0.0)

    def domains(self) -> dict[str, Domain]:
        return {name: getattr(self, name) for name in REGNET_PARAMETERS}

    def to_data(self) -> dict[str, Any]:
        return {name: domain.to_data() for name, domain in self.domains().items()}


def parse_regnet(data: Any, path: str) -> tuple[RegNetSpace | None, list[tuple[str, str]]]:
    """The generator form of ``stages``; every problem as (field path, message)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        return None, [(path, f"must be a mapping of RegNet parameters, got {data!r}")]
    for key in data:
        if key not in REGNET_PARAMETERS:
            problems.append((f"{path}.{key}", f"unknown key; valid keys are {', '.join(REGNET_PARAMETERS)}"))
    domains: dict[str, Domain] = {}
    for name in REGNET_PARAMETERS:
        if name not in data:
            if name in REGNET_REQUIRED:
                problems.append((f"{path}.{name}", "is required"))
            continue
        try:
            domains[name] = _parse_parameter(data[name], name)
        except SpecError as error:
            problems.append((f"{path}.{name}" + (f".{error.path}" if error.path else ""), error.message))
    if problems:
        return None, problems
    return RegNetSpace(**domains), []


def _parse_parameter(data: Any, name: str) -> Domain:
    if isinstance(data, Mapping):
        if name not in INTEGER_PARAMETERS:
            raise SpecError("", f"must be a value or a list of values, got {dict(data)!r}")
        for key in data:
            if key not in ("low", "high", "step"):
                raise SpecError(str(key), "unknown key; valid keys are low, high, step")
        if "low" not in data or "high" not in data:
            raise SpecError("", "a range needs low and high")
        return IntRange(low=data["low"], high=data["high"], step=data.get("step", 1))
    if isinstance(data, list):
        return Fixed(value=data[0]) if len(data) == 1 else Categorical(choices=tuple(data))
    return Fixed(value=data)


def check_regnet(space: RegNetSpace) -> list[tuple[str, str]]:
    """Every value each parameter can take, checked on its own: any combination then makes valid stages."""
    problems = []
    for name, domain in space.domains().items():
        for value in domain.values():
            try:
                check_regnet_parameter(name, value)
            except SpecError as error:
                problems.append((f"stages.regnet.{name}", error.message))
    return problems


def regnet_parameters(values: Mapping[str, Any]) -> RegNetParameters:
    return RegNetParameters(**(REGNET_DEFAULTS | dict(values)))


@functools.lru_cache(maxsize=8)
def distinct_stage_lists(space: RegNetSpace) -> tuple[tuple[Stage, ...], ...]:
    """The distinct stage lists of the whole parameter grid (many parameter sets quantise alike)."""
    names = list(REGNET_PARAMETERS)
    grids = [space.domains()[name].values() for name in names]
    found = {regnet_stages(regnet_parameters(dict(zip(names, values, strict=True))))
             for values in itertools.product(*grids)}
    return tuple(sorted(found, key=lambda stages: [(stage.out_channels, stage.num_blocks, stage.groups,
                                                    stage.bottleneck_ratio, stage.se_ratio) for stage in stages]))
